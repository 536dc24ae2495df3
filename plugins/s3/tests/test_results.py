"""ResultStore on S3: instances, URLs, saved blocks, other processes, header-only reads."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from stashflow import ResultStore
from stashflow.blocks import block_path
from stashflow.exceptions import ResultNotFound
from stashflow_s3 import S3Bucket

MiB = 1024 * 1024
VALUES = [None, 0, "text", b"\x00bytes", [1, 2.5, {"k": (1, 2)}], {"nested": {"set": {1, 2}}}]


@pytest.mark.parametrize("serializer", ["pickle", "json", "msgpack"])
def test_round_trip_through_a_block_instance(backend, serializer):
    store = ResultStore(backend, serializer=serializer)
    value = {"a": [1, 2, 3], "b": "text"}
    store.write("runs/one", value)
    assert store.read("runs/one") == value
    record = store.read_record("runs/one")
    assert record.metadata.serializer == serializer
    assert store.exists("runs/one")
    assert list(store.list("runs/")) == ["runs/one"]
    store.delete("runs/one")
    assert not store.exists("runs/one")
    with pytest.raises(ResultNotFound):
        store.read("runs/one")


def test_round_trip_through_a_url(bucket, keys_in):
    store = ResultStore(f"s3://{bucket}/prefix/sub")
    assert isinstance(store.storage, S3Bucket)
    for i, value in enumerate(VALUES):
        store.write(f"v{i}", value)
    assert [store.read(f"v{i}") for i in range(len(VALUES))] == VALUES
    assert keys_in(bucket) == [f"prefix/sub/v{i}" for i in range(len(VALUES))]


def test_expiration_and_create(backend):
    store = ResultStore(backend)
    assert store.create("once", 1) is True
    assert store.create("once", 2) is False
    assert store.read("once") == 1
    store.write("old", "x", expiration=timedelta(seconds=-1))
    with pytest.raises(ResultNotFound):
        store.read("old")
    assert not store.is_valid("old")


def test_saved_block_by_slug(bucket, moto_endpoint, stashflow_home, keys_in):
    block = S3Bucket(bucket_name=bucket, bucket_folder="dev", endpoint_url=moto_endpoint,
                     aws_access_key_id="testing", aws_secret_access_key="testing-secret-value")
    assert block.save("my-dev-block") == "s3-bucket/my-dev-block"
    path = block_path("s3-bucket", "my-dev-block")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = S3Bucket.load("my-dev-block")
    assert loaded == block
    assert "testing-secret-value" not in repr(loaded) + str(loaded)

    store = ResultStore("s3-bucket/my-dev-block")
    store.write("r", {"v": 1})
    assert ResultStore("s3-bucket/my-dev-block").read("r") == {"v": 1}
    assert keys_in(bucket) == ["dev/r"]


def test_default_storage_block_setting(bucket, monkeypatch):
    S3Bucket(bucket_name=bucket, bucket_folder="d").save("default")
    monkeypatch.setenv("STASHFLOW_DEFAULT_RESULT_STORAGE_BLOCK", "s3-bucket/default")
    store = ResultStore()
    assert isinstance(store.storage, S3Bucket)
    store.write("k", 42)
    assert store.read("k") == 42


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=60, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_records_written_by_one_process_read_by_another(bucket):
    url = f"s3://{bucket}/shared"
    _python(f"""
        from stashflow import ResultStore
        store = ResultStore({url!r})
        store.write("from-child", {{"pid": "child", "data": list(range(5))}})
    """)
    store = ResultStore(url)
    assert store.read("from-child") == {"pid": "child", "data": [0, 1, 2, 3, 4]}
    store.write("from-parent", ("parent", b"\x00" * 1000))
    got = _python(f"""
        from stashflow import ResultStore
        value = ResultStore({url!r}).read("from-parent")
        print(value[0], len(value[1]))
    """)
    assert got == "parent 1000"


def test_reading_a_header_does_not_download_the_payload(bucket, proxy, moto_endpoint):
    payload = os.urandom(32 * MiB)
    ResultStore(f"s3://{bucket}/p").write("big", payload)
    relay = proxy()
    counted = ResultStore(S3Bucket(bucket_name=bucket, bucket_folder="p", endpoint_url=relay.url))
    counted.exists("big")  # warm the connection
    relay.reset_counts()

    meta = counted.read_metadata("big")
    assert meta.size > len(payload)
    header_bytes = relay.down
    assert header_bytes < 128 * 1024, header_bytes  # one HEAD + one 64 KiB ranged GET

    relay.reset_counts()
    assert counted.is_valid("big")
    assert counted.exists("big")
    assert relay.down < 128 * 1024

    relay.reset_counts()
    assert counted.read("big") == payload
    # Verified into a private copy, then deserialized from it: the payload crosses
    # the wire once.
    assert len(payload) <= relay.down < len(payload) + MiB
