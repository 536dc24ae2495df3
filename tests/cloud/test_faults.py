"""Faults on each cloud backend: a missing bucket, and a server stopped in the middle of
a run. Every failure is a StorageError that names the backend, the action and the
object, shows no credential, and is never mistaken for a missing record."""

from __future__ import annotations

import io
import os
import time

import pytest
from stashflow import ResultStore
from stashflow.exceptions import StorageError
from stashflow_test_io import Attempt

MiB = 1024 * 1024


def expect_storage_error(cloud, exc: BaseException | None, action: str, url: str) -> None:
    assert isinstance(exc, StorageError), (action, exc)
    assert str(exc).startswith(f"{cloud.type_slug}: could not {action} {url}"), str(exc)
    assert cloud.secret not in str(exc)


def test_a_missing_bucket_is_a_storage_error_naming_backend_and_key(cloud):
    backend = cloud.backend("no-such-bucket", "f")
    for key, data in [("k/1", b"x"), ("k/2", io.BytesIO(b"x"))]:
        with pytest.raises(StorageError, match="does not exist") as caught:
            backend.write(key, data)
        expect_storage_error(cloud, caught.value, "write", backend.url_for(key))


def test_a_server_stopped_mid_run_gives_storage_errors_naming_backend_and_key(
        cloud, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # botocore's 5 attempts with backoff take ~7 s
    with type(cloud).start(tmp_path) as private:
        backend = private.backend(private.bucket("doomed"), "f")
        store = ResultStore(backend)
        store.write("before", "ok")
        assert backend.create("created-before", b"x")  # GCS: the emulator probe is done
        value = os.urandom(16 * MiB)  # several parts: the server goes mid-upload

        def write_until_it_fails() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                store.write("k/during", value)

        writer = Attempt(write_until_it_fails)
        time.sleep(0.3)
        private.server.stop()
    # gcsfs retries a refused connection for ~35 s, azure-storage-blob for ~85 s: the calls
    # wait out their retries together.
    calls = {
        ("read", "k/read"): lambda: backend.read("k/read"),
        ("read", "k/open_read"): lambda: backend.open_read("k/open_read"),
        ("write", "k/write"): lambda: backend.write("k/write", b"x"),
        ("create", "k/create"): lambda: backend.create("k/create", b"x"),
        ("check", "k/exists"): lambda: backend.exists("k/exists"),
        ("list", "k/list"): lambda: list(backend.list("k/list")),
        ("write", "k/store-write"): lambda: store.write("k/store-write", 1),
        ("read", "before"): lambda: store.read("before"),  # an error, not a miss
    }
    attempts = {where: Attempt(call) for where, call in calls.items()}
    writer.join(300)
    assert writer.outcome is not None, "the write should fail once the server is gone"
    expect_storage_error(cloud, writer.outcome, "write", backend.url_for("k/during"))
    for (action, key), attempt in attempts.items():
        attempt.join(300)
        expect_storage_error(cloud, attempt.outcome, action, backend.url_for(key))
