"""GcsBucket's storage primitives against a real emulator on loopback."""

from __future__ import annotations

import io
import os
import pickle
import threading
from datetime import UTC, datetime

import pytest
from stashflow.exceptions import StorageError
from stashflow.records import read_header, write_record
from stashflow.registry import resolve_serializer
from stashflow.storage import record_keys
from stashflow_gcs import PART_BYTES, GcsBucket


class Exploding(io.RawIOBase):
    """A readable stream that fails after `good` bytes, like a writer that dies mid-value."""

    def __init__(self, good: int):
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.left <= 0:
            raise RuntimeError("the producer died")
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


def raw_names(client, bucket: str) -> list[str]:
    return sorted(client.find(bucket))


def test_write_then_read_bytes_bytearray_memoryview_and_file(backend):
    backend.write("a/bytes", b"one")
    backend.write("a/bytearray", bytearray(b"two"))
    backend.write("a/view", memoryview(b"three"))
    backend.write("a/file", io.BytesIO(b"four"))
    assert [backend.read(k) for k in ("a/bytes", "a/bytearray", "a/view", "a/file")] == [
        b"one", b"two", b"three", b"four"]


def test_write_replaces_the_whole_object(backend):
    backend.write("k", b"a much longer first value")
    backend.write("k", b"short")
    assert backend.read("k") == b"short"


def test_streamed_write_uploads_in_parts_and_reads_back(backend, gcs_client, bucket):
    data = os.urandom(2 * PART_BYTES + 12345)
    backend.write("big/stream", io.BytesIO(data))
    assert backend.read("big/stream") == data
    assert gcs_client.info(f"{bucket}/results/v1/big/stream")["size"] == len(data)


def test_failed_streamed_write_publishes_nothing(backend):
    backend.write("k", b"old")
    with pytest.raises(RuntimeError, match="producer died"):
        backend.write("k", io.BufferedReader(Exploding(PART_BYTES + 5)))
    with pytest.raises(RuntimeError, match="producer died"):
        backend.write("fresh", io.BufferedReader(Exploding(1000)))
    assert backend.read("k") == b"old"
    assert not backend.exists("fresh")


def test_missing_key_raises_file_not_found(backend):
    for call in (backend.read, backend.open_read, backend.stat):
        with pytest.raises(FileNotFoundError,
                           match=f"gcs-bucket: no object at gs://{backend.bucket}/results/v1/no/such/key"):
            call("no/such/key")


def test_exists_and_delete(backend):
    assert not backend.exists("d/k")
    backend.write("d/k", b"1")
    assert backend.exists("d/k")
    assert not backend.exists("d")  # a "directory" is not an object
    backend.delete("d/k")
    assert not backend.exists("d/k")
    backend.delete("d/k")  # missing: a no-op


def test_stat_gives_size_mtime_and_generation(backend):
    backend.write("s", b"12345")
    st = backend.stat("s")
    assert st["size"] == 5
    assert st["mtime"] > 0
    assert st["generation"]


def test_open_read_is_seekable_and_reads_a_header_without_the_payload(backend):
    serializer = resolve_serializer("pickle")
    buf = io.BytesIO()
    meta = write_record(buf, os.urandom(4 * 1024 * 1024), serializer, created=datetime.now(UTC))
    backend.write("rec", buf.getvalue())
    with backend.open_read("rec") as f:
        header, _ = read_header(f, "rec")
        assert header.size == meta.size
        assert f.fetched <= 64 * 1024  # one small ranged GET, not the 4 MiB payload
        assert f.seek(0, 2) == len(buf.getvalue())
        f.seek(-10, 2)
        assert f.read() == buf.getvalue()[-10:]
        f.seek(100)
        assert f.read(5) == buf.getvalue()[100:105]


def test_a_header_then_the_rest_fetches_each_byte_once(backend):
    data = os.urandom(3 * PART_BYTES // 2)
    backend.write("big", data)
    with backend.open_read("big") as f:
        assert f.read(100) == data[:100]
        f.seek(50)
        assert f.read() == data[50:]
        assert f.fetched == len(data)


def test_a_reader_never_mixes_two_generations(backend, gcs_server):
    if gcs_server.name != "fake-gcs-server":
        pytest.skip(f"{gcs_server.name} serves the live object whatever generation is asked for")
    backend.write("g", b"A" * 200_000)
    with backend.open_read("g") as f:
        assert f.read(10) == b"A" * 10
        backend.write("g", b"B" * 200_000)
        with pytest.raises(StorageError, match="replaced or deleted while being read"):
            f.read()


def test_list_is_relative_to_the_folder_and_gives_internal_keys_too(backend, gcs_client, bucket):
    for key in ("a/1", "a/2", "ab", "b/c/d"):
        backend.write(key, b"x")
    gcs_client.pipe_file(f"{bucket}/results/v1/.stashflow-locks/a", b"lock")
    gcs_client.pipe_file(f"{bucket}/results/v1/a/.stashflow-tmp-1", b"tmp")
    gcs_client.pipe_file(f"{bucket}/results/v10/a/3", b"a sibling folder")
    gcs_client.pipe_file(f"{bucket}/results/v1/dir/", b"")  # a console "folder" placeholder
    assert sorted(backend.list()) == [".stashflow-locks/a", "a/.stashflow-tmp-1", "a/1", "a/2",
                                      "ab", "b/c/d"]
    assert sorted(record_keys(backend)) == ["a/1", "a/2", "ab", "b/c/d"]
    assert sorted(backend.list("a")) == ["a/.stashflow-tmp-1", "a/1", "a/2", "ab"]
    assert sorted(backend.list("a/")) == ["a/.stashflow-tmp-1", "a/1", "a/2"]
    assert sorted(backend.list("b/c")) == ["b/c/d"]
    assert list(backend.list("zzz")) == []
    assert list(backend.list(".stashflow-locks/")) == [".stashflow-locks/a"]


def test_the_storage_lock_manager_works_on_it(backend):
    from stashflow.locking import StorageLockManager, new_holder

    manager = StorageLockManager(backend)
    first, second = new_holder(), new_holder()
    assert manager.acquire("job", first, timeout=5)
    assert not manager.acquire("job", second, timeout=0.3)
    manager.release("job", first)
    assert manager.acquire("job", second, timeout=5)
    manager.release("job", second)
    assert all(k.startswith(".stashflow/locks/") for k in backend.list(".stashflow"))
    assert list(backend.list(".stashflow"))
    assert list(record_keys(backend)) == []


def test_list_at_the_bucket_root(gcs_server, bucket):
    root = GcsBucket(bucket=bucket, endpoint_url=gcs_server.url, token="anon")
    root.write("x/y", b"1")
    root.write("z", b"2")
    assert sorted(root.list()) == ["x/y", "z"]
    assert list(root.list("x/")) == ["x/y"]


def test_folder_is_applied_exactly_once(gcs_server, gcs_client, bucket):
    for folder in ("results/v1", "/results/v1/", "results/v1/"):
        backend = GcsBucket(bucket=bucket, bucket_folder=folder, endpoint_url=gcs_server.url,
                            token="anon")
        backend.write("k/1", b"x")
        assert backend.url_for("k/1") == f"gs://{bucket}/results/v1/k/1"
        assert list(backend.list()) == ["k/1"]
    assert raw_names(gcs_client, bucket) == [f"{bucket}/results/v1/k/1"]


def test_create_is_create_if_absent(backend):
    assert backend.create("c/small", b"first") is True
    assert backend.create("c/small", b"second") is False
    assert backend.read("c/small") == b"first"
    assert backend.create("c/file", io.BytesIO(b"first")) is True
    assert backend.create("c/file", io.BytesIO(b"second")) is False
    assert backend.read("c/file") == b"first"
    big = os.urandom(PART_BYTES + 1)
    assert backend.create("c/big", io.BytesIO(big)) is True
    assert backend.create("c/big", io.BytesIO(b"second")) is False
    assert backend.read("c/big") == big


def test_conditional_create_raced_by_two_threads_has_one_winner(backend, gcs_server):
    if gcs_server.name != "fake-gcs-server":
        pytest.skip(f"{gcs_server.name} ignores ifGenerationMatch: create is not atomic there")
    for round_ in range(8):
        key = f"race/{round_}"
        barrier = threading.Barrier(2)
        results: dict[int, bool] = {}

        def racer(i: int, key=key, barrier=barrier, results=results) -> None:
            barrier.wait()
            results[i] = backend.create(key, f"writer {i}".encode())

        threads = [threading.Thread(target=racer, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results.values()) == [False, True], results
        winner = next(i for i, won in results.items() if won)
        assert backend.read(key) == f"writer {winner}".encode()


def test_emulator_that_ignores_preconditions_is_detected(start_gcs_server):
    with start_gcs_server("gcp-storage-emulator") as server:
        server.client().mkdir("lax")
        backend = GcsBucket(bucket="lax", endpoint_url=server.url, token="anon")
        with pytest.warns(RuntimeWarning, match="ignores ifGenerationMatch=0"):
            assert backend.create("k", b"first") is True
        assert backend.create("k", b"second") is False  # checked, then refused
        assert backend.read("k") == b"first"
        assert [n.rsplit("/", 1)[-1] for n in server.client().find("lax")] == ["k"]


def test_url_form_and_url_for():
    b = GcsBucket.from_url("gs://my-bucket/some/folder")
    assert (b.bucket, b.bucket_folder) == ("my-bucket", "some/folder")
    assert b.url_for("k") == "gs://my-bucket/some/folder/k"
    assert GcsBucket.from_url("gcs://my-bucket").bucket_folder == ""
    assert GcsBucket.from_url("gcs://my-bucket").url_for("a/b") == "gs://my-bucket/a/b"


def test_bad_configuration_is_refused():
    with pytest.raises(TypeError, match="bucket"):
        GcsBucket()
    with pytest.raises(ValueError, match="bucket_folder"):
        GcsBucket(bucket="b", bucket_folder="a/../b")


def test_token_is_a_secret_and_the_client_is_not_pickled(backend):
    assert "anon" not in repr(backend)
    backend.write("p", b"1")
    assert backend._fs is not None
    clone = pickle.loads(pickle.dumps(backend))
    assert clone._fs is None and clone == backend
    assert clone.read("p") == b"1"
