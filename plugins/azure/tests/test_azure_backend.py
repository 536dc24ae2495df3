"""AzureBlobStorageContainer's storage primitives against Azurite on loopback."""

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
from stashflow_azure import PART_BYTES, AzureBlobStorageContainer


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


def race(n: int, call) -> dict[int, object]:
    """Run call(i) in n threads released together; their results by i."""
    barrier = threading.Barrier(n)
    results: dict[int, object] = {}

    def run(i: int) -> None:
        barrier.wait()
        results[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_write_then_read_bytes_bytearray_memoryview_and_file(backend):
    backend.write("a/bytes", b"one")
    backend.write("a/bytearray", bytearray(b"two"))
    backend.write("a/view", memoryview(b"three"))
    backend.write("a/file", io.BytesIO(b"four"))
    backend.write("a/empty", b"")
    assert [backend.read(k) for k in ("a/bytes", "a/bytearray", "a/view", "a/file", "a/empty")
            ] == [b"one", b"two", b"three", b"four", b""]


def test_write_replaces_the_whole_blob(backend):
    backend.write("k", b"a much longer first value")
    backend.write("k", b"short")
    assert backend.read("k") == b"short"


def test_streamed_write_is_staged_in_blocks_and_committed_once(backend, azurite, container):
    data = os.urandom(2 * PART_BYTES + 12345)
    backend.write("big/stream", io.BufferedReader(io.BytesIO(data)))
    assert backend.read("big/stream") == data
    blob = azurite.client().get_blob_client(container, "results/v1/big/stream")
    committed, uncommitted = blob.get_block_list("all")
    assert [b.size for b in committed] == [PART_BYTES, PART_BYTES, 12345]
    assert uncommitted == []


def test_failed_streamed_write_publishes_nothing(backend):
    backend.write("k", b"old")
    with pytest.raises(RuntimeError, match="producer died"):
        backend.write("k", Exploding(2 * PART_BYTES + 5))  # two blocks staged, then it dies
    with pytest.raises(RuntimeError, match="producer died"):
        backend.write("fresh", Exploding(2 * PART_BYTES + 5))
    assert backend.read("k") == b"old"
    assert not backend.exists("fresh")


def test_missing_key_raises_file_not_found(backend):
    where = f"azure-blob-storage: no blob at az://{backend.container_name}/results/v1/no/such/key"
    for call in (backend.read, backend.open_read, backend.stat):
        with pytest.raises(FileNotFoundError, match=where):
            call("no/such/key")


def test_exists_and_delete(backend):
    assert not backend.exists("d/k")
    backend.write("d/k", b"1")
    assert backend.exists("d/k")
    assert not backend.exists("d")  # a "directory" is not a blob
    backend.delete("d/k")
    assert not backend.exists("d/k")
    backend.delete("d/k")  # missing: a no-op


def test_stat_gives_size_mtime_and_etag(backend):
    backend.write("s", b"12345")
    st = backend.stat("s")
    assert st["size"] == 5
    assert st["mtime"] > 0
    assert st["etag"]


def test_open_read_is_seekable_and_reads_a_header_without_the_payload(backend):
    buf = io.BytesIO()
    meta = write_record(buf, os.urandom(4 * 1024 * 1024), resolve_serializer("pickle"),
                        created=datetime.now(UTC))
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


def test_a_reader_never_mixes_two_versions(backend):
    backend.write("g", b"A" * 200_000)
    with backend.open_read("g") as f:
        assert f.read(10) == b"A" * 10
        backend.write("g", b"B" * 200_000)
        with pytest.raises(StorageError, match="replaced or deleted while being read"):
            f.read()


def test_list_is_relative_to_the_folder_and_gives_internal_keys_too(backend, azurite, container):
    for key in ("a/1", "a/2", "ab", "b/c/d"):
        backend.write(key, b"x")
    raw = azurite.client().get_container_client(container)
    raw.upload_blob("results/v1/.stashflow-locks/a", b"lock")
    raw.upload_blob("results/v1/a/.stashflow-tmp-1", b"tmp")
    raw.upload_blob("results/v10/a/3", b"a sibling folder")
    raw.upload_blob("results/v1/dir/", b"")  # a "folder" placeholder
    raw.upload_blob("results/v1/adls-dir", b"", metadata={"hdi_isfolder": "true"})
    assert sorted(backend.list()) == [".stashflow-locks/a", "a/.stashflow-tmp-1", "a/1", "a/2",
                                      "ab", "b/c/d"]
    assert sorted(record_keys(backend)) == ["a/1", "a/2", "ab", "b/c/d"]
    assert not backend.exists("adls-dir")  # a directory entry is not a stored value
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


def test_list_at_the_container_root(azurite, container):
    root = AzureBlobStorageContainer(container_name=container,
                                     connection_string=azurite.connection_string)
    root.write("x/y", b"1")
    root.write("z", b"2")
    assert sorted(root.list()) == ["x/y", "z"]
    assert list(root.list("x/")) == ["x/y"]


def test_folder_is_applied_exactly_once(azurite, container):
    for folder in ("results/v1", "/results/v1/", "results/v1/"):
        backend = AzureBlobStorageContainer(container_name=container, blob_folder=folder,
                                            connection_string=azurite.connection_string)
        backend.write("k/1", b"x")
        assert backend.url_for("k/1") == f"az://{container}/results/v1/k/1"
        assert list(backend.list()) == ["k/1"]
    assert azurite.names(container) == ["results/v1/k/1"]


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


def test_conditional_create_raced_by_two_threads_has_one_winner(backend):
    for round_ in range(8):
        key = f"race/{round_}"
        results = race(2, lambda i, key=key: backend.create(key, f"writer {i}".encode()))
        assert sorted(results.values()) == [False, True], results
        winner = next(i for i, won in results.items() if won)
        assert backend.read(key) == f"writer {winner}".encode()


def test_big_conditional_creates_raced_have_one_winner(backend):
    values = [bytes([i]) * (PART_BYTES + 100) for i in range(2)]
    results = race(2, lambda i: backend.create("race/big", io.BytesIO(values[i])))
    assert sorted(results.values()) == [False, True], results
    winner = next(i for i, won in results.items() if won)
    assert backend.read("race/big") == values[winner]


def test_big_writes_raced_on_one_blob_both_land_whole(backend):
    values = [bytes([i]) * (2 * PART_BYTES) for i in range(2)]
    results = race(2, lambda i: backend.write("race/write", io.BytesIO(values[i])))
    assert results == {0: None, 1: None}
    assert backend.read("race/write") in values


def test_url_form_and_url_for():
    b = AzureBlobStorageContainer.from_url("az://results/some/folder")
    assert (b.container_name, b.blob_folder, b.account_name) == ("results", "some/folder", None)
    assert b.url_for("k") == "az://results/some/folder/k"
    adls = AzureBlobStorageContainer.from_url("abfs://results@myaccount.dfs.core.windows.net/f")
    assert (adls.container_name, adls.blob_folder, adls.account_name) == (
        "results", "f", "myaccount")
    assert AzureBlobStorageContainer.from_url("az://results").url_for("a/b") == "az://results/a/b"


def test_bad_configuration_is_refused(monkeypatch):
    with pytest.raises(TypeError, match="container_name"):
        AzureBlobStorageContainer()
    with pytest.raises(ValueError, match="blob_folder"):
        AzureBlobStorageContainer(container_name="c", blob_folder="a/../b")
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(StorageError, match="Set connection_string, or account_name"):
        AzureBlobStorageContainer(container_name="c").exists("k")


def test_secrets_are_masked_and_the_client_is_not_pickled(backend):
    assert "AccountKey" not in repr(backend)
    backend.write("p", b"1")
    assert backend._fs is not None
    clone = pickle.loads(pickle.dumps(backend))
    assert clone._fs is None and clone == backend
    assert clone.read("p") == b"1"
