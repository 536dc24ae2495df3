"""What is S3Bucket's own: its configuration, ListObjectsV2 paging, multipart uploads,
streams with short reads, a client rebuilt after fork. tests/cloud runs the rest."""

from __future__ import annotations

import io
import os

import pytest
from stashflow import ResultStore
from stashflow.exceptions import StorageError, StorageNotFound
from stashflow_s3 import S3Bucket

MiB = 1024 * 1024


def test_bucket_name_is_checked():
    with pytest.raises(TypeError, match="bucket_name"):
        S3Bucket()
    with pytest.raises(ValueError, match="invalid S3 bucket name"):
        S3Bucket(bucket_name="a/b")


def test_from_url():
    b = S3Bucket.from_url("s3://my-bucket/some/prefix/")
    assert (b.bucket_name, b.bucket_folder) == ("my-bucket", "some/prefix")
    assert S3Bucket.from_url("s3://my-bucket").bucket_folder == ""
    with pytest.raises(StorageNotFound, match="expected s3://bucket"):
        S3Bucket.from_url("s3:///prefix")


def test_a_missing_bucket_fails_reads_and_listings_too(moto_endpoint):
    b = S3Bucket(bucket_name="no-such-bucket", endpoint_url=moto_endpoint)
    with pytest.raises(StorageError, match=r"could not read s3://no-such-bucket/k: .*does not exist"):
        b.read("k")
    with pytest.raises(StorageError, match=r"could not list s3://no-such-bucket/k: .*does not exist"):
        list(b.list("k"))


def test_list_pages_through_many_keys(backend):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:  # more than one ListObjectsV2 page (1000 keys)
        list(pool.map(lambda i: backend.write(f"many/{i:04d}", b""), range(1005)))
    assert sorted(backend.list("many/")) == [f"many/{i:04d}" for i in range(1005)]


def test_large_writes_go_up_in_parts(backend, bucket, raw):
    data = os.urandom(20 * MiB + 1)
    backend.write("big", io.BytesIO(data))
    ResultStore(backend).write("record", data)  # from ResultStore's spool, in parts too
    for key in ("big", "record"):
        head = raw.head_object(Bucket=bucket, Key=f"team/results/{key}")
        assert head["ETag"].strip('"').endswith("-3")  # 8 + 8 + 4 MiB parts
    assert backend.read("big") == data
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_write_from_a_pipe_with_short_reads(backend):
    import threading

    data = os.urandom(20 * MiB)
    r, w = os.pipe()

    def feed() -> None:
        with open(w, "wb") as f:
            f.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    with open(r, "rb", buffering=0) as source:  # reads return what the pipe holds (<= 64 KiB)
        backend.write("piped", source)
    feeder.join()
    assert backend.read("piped") == data


def test_open_write_spools_big_records_and_patches_the_start(backend):
    with backend.open_write("rec") as f:
        f.write(b"\0" * 8)
        f.write(os.urandom(9 * MiB))
        f.seek(0)
        f.write(b"HEADER!!")
    with backend.open_read("rec") as f:
        assert f.read(8) == b"HEADER!!"
        assert f.seek(0, io.SEEK_END) == 9 * MiB + 8


def _read_in_child(backend, key, queue):
    queue.put(backend.read(key))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_rebuilds_its_client(backend):
    import multiprocessing

    backend.write("k", b"from parent")  # the parent's client (and event loop) now exist
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_in_child, args=(backend, "k", queue))
    child.start()
    assert queue.get(timeout=30) == b"from parent"
    child.join(30)
    assert child.exitcode == 0
    assert backend.read("k") == b"from parent"
