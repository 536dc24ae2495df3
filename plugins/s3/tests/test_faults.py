"""Network faults: a dead endpoint, or the server vanishing mid-upload."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest
from stashflow import ResultStore
from stashflow._servers import free_port, running
from stashflow.exceptions import ResultNotFound, StorageError
from stashflow_s3 import S3Bucket

MiB = 1024 * 1024


@pytest.fixture
def few_retries(monkeypatch):
    """botocore's default retries (5 attempts, backoff) make each failure take ~7 s."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")


def test_dead_endpoint_names_backend_and_key(few_retries):
    dead = S3Bucket(bucket_name="bkt", bucket_folder="f",
                    endpoint_url=f"http://127.0.0.1:{free_port()}")
    where = "s3-bucket: could not {} s3://bkt/f/some/key"
    for action, call in [("write", lambda: dead.write("some/key", b"v")),
                         ("create", lambda: dead.create("some/key", b"v")),
                         ("read", lambda: dead.read("some/key")),
                         ("check", lambda: dead.exists("some/key"))]:
        with pytest.raises(StorageError) as info:
            call()
        assert str(info.value).startswith(where.format(action)), info.value
    with pytest.raises(StorageError, match="could not list s3://bkt/f/some"):
        list(dead.list("some"))


def test_store_write_to_dead_endpoint_is_an_error_not_a_miss(few_retries):
    store = ResultStore(S3Bucket(bucket_name="bkt", endpoint_url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(StorageError, match="s3://bkt/k"):
        store.write("k", 1)
    with pytest.raises(StorageError, match="s3://bkt/k"):
        store.read("k")


def test_connection_cut_mid_upload_leaves_no_object(backend, bucket, proxy, keys_in, few_retries):
    payload = os.urandom(40 * MiB)
    relay = proxy(cut_after_up=20 * MiB)  # dies mid-upload, parts already sent
    cut = S3Bucket(**{**backend.field_values(reveal_secrets=True), "endpoint_url": relay.url})
    store = ResultStore(cut)
    with pytest.raises(StorageError) as info:
        store.write("runs/big", payload)
    assert str(info.value).startswith(f"s3-bucket: could not write s3://{bucket}/team/results/runs/big")
    assert relay.dead.is_set()

    # The server itself is fine: nothing is visible there, and the cache is not poisoned.
    assert keys_in(bucket) == []
    healthy = ResultStore(backend)
    assert not healthy.exists("runs/big")
    with pytest.raises(ResultNotFound):
        healthy.read("runs/big")
    healthy.write("runs/big", b"retried")
    assert healthy.read("runs/big") == b"retried"


def test_server_stopped_mid_run(tmp_path, few_retries):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with running(cmd, f"{url}/moto-api/", tmp_path / "moto.log") as server:
        b = S3Bucket(bucket_name="bkt-stop", endpoint_url=url)
        b.filesystem().call_s3("create_bucket", Bucket="bkt-stop")
        store = ResultStore(b)
        store.write("before", "ok")
        errors: list[BaseException] = []

        def write_until_it_fails() -> None:
            value = os.urandom(16 * MiB)
            deadline = time.monotonic() + 30
            try:
                while time.monotonic() < deadline:
                    store.write("during", value)
            except BaseException as exc:
                errors.append(exc)

        writer = threading.Thread(target=write_until_it_fails)
        writer.start()
        time.sleep(0.3)
        server.stop()
        writer.join(60)
    assert errors, "the write should fail once the server is gone"
    assert isinstance(errors[0], StorageError)
    assert "s3://bkt-stop/during" in str(errors[0])
    with pytest.raises(StorageError, match="s3://bkt-stop/before"):
        store.read("before")
