"""Every StorageBackend method of S3Bucket against a real moto server."""

from __future__ import annotations

import io
import os
import pickle
import time

import pytest
from stashflow.exceptions import StorageError, StorageNotFound
from stashflow.registry import get_registry
from stashflow.storage import record_keys
from stashflow_s3 import S3Bucket

MiB = 1024 * 1024


def test_registered_under_its_type_and_scheme():
    registry = get_registry()
    assert registry.storage_types["s3-bucket"] is S3Bucket
    assert registry.url_schemes["s3"] is S3Bucket


def test_import_does_not_load_s3fs():
    import subprocess
    import sys

    code = "import sys, stashflow, stashflow_s3; print('s3fs' in sys.modules, 'botocore' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_write_read_bytes_and_files(backend):
    backend.write("a/b.bin", b"hello")
    backend.write("a/file", io.BytesIO(b"from a file"))
    backend.write("empty", b"")
    assert backend.read("a/b.bin") == b"hello"
    assert backend.read("a/file") == b"from a file"
    assert backend.read("empty") == b""
    backend.write("a/b.bin", bytearray(b"replaced"))
    assert backend.read("a/b.bin") == b"replaced"


def test_bucket_folder_is_applied_exactly_once(backend, bucket, keys_in):
    backend.write("k1", b"1")
    with backend.open_write("dir/k2") as f:
        f.write(b"2")
    assert backend.create("k3", b"3")
    assert keys_in(bucket) == ["team/results/dir/k2", "team/results/k1", "team/results/k3"]
    assert sorted(backend.list()) == ["dir/k2", "k1", "k3"]
    assert backend.url_for("dir/k2") == f"s3://{bucket}/team/results/dir/k2"


def test_folder_slashes_are_normalised(bucket, moto_endpoint, keys_in):
    b = S3Bucket(bucket_name=bucket, bucket_folder="/x/y/", endpoint_url=moto_endpoint)
    b.write("k", b"v")
    assert keys_in(bucket) == ["x/y/k"]
    no_folder = S3Bucket(bucket_name=bucket, endpoint_url=moto_endpoint)
    assert no_folder.read("x/y/k") == b"v"
    assert no_folder.url_for() == f"s3://{bucket}"


def test_open_read_is_seekable_and_reads_ranges(backend):
    data = os.urandom(3 * MiB + 123)
    backend.write("obj", data)
    with backend.open_read("obj") as f:
        assert f.seekable()
        assert f.read(10) == data[:10]
        assert f.seek(2 * MiB) == 2 * MiB
        assert f.read(5) == data[2 * MiB:2 * MiB + 5]
        assert f.seek(-7, io.SEEK_END) == len(data) - 7
        assert f.read() == data[-7:]
        assert f.read(1) == b""
        f.seek(100)
        buf = bytearray(MiB)
        assert f.readinto(buf) == MiB
        assert bytes(buf) == data[100:100 + MiB]
        f.seek(0)
        assert f.read() == data


def test_missing_keys(backend):
    with pytest.raises(FileNotFoundError, match="team/results/nope"):
        backend.read("nope")
    with pytest.raises(FileNotFoundError):
        backend.open_read("nope")
    with pytest.raises(FileNotFoundError):
        backend.stat("nope")
    assert not backend.exists("nope")
    backend.delete("nope")  # a no-op


def test_exists_delete_stat(backend):
    backend.write("k", b"12345")
    assert backend.exists("k")
    st = backend.stat("k")
    assert st["size"] == 5
    assert abs(st["mtime"] - time.time()) < 120
    backend.delete("k")
    assert not backend.exists("k")
    backend.delete("k")


def test_list_prefixes_and_internal_keys(backend, bucket, raw):
    for key in ("a/1", "a/2", "ab", "b/c/d", "x"):
        backend.write(key, b"v")
    backend.write(".stashflow-locks/a", b"lock")
    backend.write("a/.stashflow-tmp-1", b"tmp")
    raw.put_object(Bucket=bucket, Key="team/results/dir-marker/", Body=b"")
    raw.put_object(Bucket=bucket, Key="team/other", Body=b"outside the folder")
    assert sorted(backend.list()) == [".stashflow-locks/a", "a/.stashflow-tmp-1", "a/1", "a/2",
                                      "ab", "b/c/d", "x"]
    assert sorted(record_keys(backend)) == ["a/1", "a/2", "ab", "b/c/d", "x"]
    assert sorted(backend.list("a")) == ["a/.stashflow-tmp-1", "a/1", "a/2", "ab"]
    assert sorted(backend.list("a/")) == ["a/.stashflow-tmp-1", "a/1", "a/2"]
    assert list(backend.list("b/c/")) == ["b/c/d"]
    assert list(backend.list("zzz")) == []
    assert list(backend.list(".stashflow-locks/")) == [".stashflow-locks/a"]


def test_list_pages_through_many_keys(backend):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:  # more than one ListObjectsV2 page (1000 keys)
        list(pool.map(lambda i: backend.write(f"many/{i:04d}", b""), range(1005)))
    assert sorted(backend.list("many/")) == [f"many/{i:04d}" for i in range(1005)]


def test_create_is_conditional(backend):
    assert backend.create("once", b"first") is True
    assert backend.create("once", b"second") is False
    assert backend.read("once") == b"first"


def test_create_of_a_multipart_object_is_conditional(backend):
    big = os.urandom(20 * MiB)
    assert backend.create("big", io.BytesIO(big)) is True
    assert backend.create("big", big[::-1]) is False
    assert backend.read("big") == big


def test_large_writes_go_up_in_parts(backend, bucket, raw):
    data = os.urandom(20 * MiB + 1)
    backend.write("big", io.BytesIO(data))
    head = raw.head_object(Bucket=bucket, Key="team/results/big")
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


def test_failed_open_write_uploads_nothing(backend, bucket, keys_in):
    with pytest.raises(RuntimeError), backend.open_write("k") as f:
        f.write(b"partial")
        raise RuntimeError("serializer failed")
    assert keys_in(bucket) == []


def test_open_write_spools_big_records_and_patches_the_start(backend):
    with backend.open_write("rec") as f:
        f.write(b"\0" * 8)
        f.write(os.urandom(9 * MiB))
        f.seek(0)
        f.write(b"HEADER!!")
    with backend.open_read("rec") as f:
        assert f.read(8) == b"HEADER!!"
        assert f.seek(0, io.SEEK_END) == 9 * MiB + 8


def test_reader_pins_the_version_it_opened(backend):
    backend.write("k", os.urandom(2 * MiB))
    f = backend.open_read("k")
    f.read(10)
    backend.write("k", os.urandom(2 * MiB))
    with pytest.raises(StorageError, match="replaced while being read"):
        f.read()


def test_missing_bucket_is_a_storage_error(moto_endpoint):
    b = S3Bucket(bucket_name="no-such-bucket", endpoint_url=moto_endpoint)
    with pytest.raises(StorageError, match=r"s3-bucket: could not write s3://no-such-bucket/k"):
        b.write("k", b"v")
    with pytest.raises(StorageError, match="could not list s3://no-such-bucket"):
        list(b.list())


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


def test_pickles_without_its_client(backend):
    backend.write("k", b"v")
    assert backend._fs is not None
    clone = pickle.loads(pickle.dumps(backend))
    assert clone == backend
    assert clone._fs is None
    assert clone.read("k") == b"v"


def test_secrets_never_shown(backend):
    for text in (repr(backend), str(backend), str(backend.field_values())):
        assert "testing-secret-value" not in text
    assert backend.field_values(reveal_secrets=True)["aws_secret_access_key"] == "testing-secret-value"


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
