"""`StorageBackendTests`: the storage contract, as tests a backend's project subclasses.

Supply a ``backend`` fixture (a fresh, empty backend) and subclass::

    class TestMyBackend(StorageBackendTests):
        @pytest.fixture
        def backend(self, tmp_path):
            return MyBackend(root=str(tmp_path))

Class attributes tune the heavier tests for slow services; the defaults are
what the bundled backends run with.
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from ..serializers import Serializer

MiB = 1024 * 1024

# Keys that must never reach a backend: each breaks one rule of stashflow.keys.
BAD_KEYS = (
    "", "/absolute", "../escape", "a/../../escape", "a/./b", "a//b", "trailing/",
    "back\\slash", "nul\x00byte", "new\nline", "%2e%2e/escape", "\uff0e\uff0e/escape",
    ".stashflow/reserved", "a/.stashflow-tmp-x",
)


def _pattern(size: int, seed: int = 0) -> Iterator[bytes]:
    """`size` bytes of a deterministic, incompressible pattern, in 1 MiB chunks."""
    block = random.Random(seed).randbytes(MiB)
    done = 0
    while done < size:
        n = min(MiB, size - done)
        # The chunk number up front: shifted or repeated chunks do not compare equal.
        chunk = (done // MiB).to_bytes(8, "little") + block[8:]
        yield chunk[:n]
        done += n


class _PatternFile(io.RawIOBase):
    """A readable binary stream of `_pattern(size)`: a large value never held whole."""

    def __init__(self, size: int, seed: int = 0):
        self._chunks = _pattern(size, seed)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._pending:
            self._pending = next(self._chunks, b"")
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _pattern_bytes(size: int, seed: int, start: int, stop: int) -> bytes:
    """Bytes [start, stop) of `_pattern(size, seed)`, without making the rest."""
    first = start // MiB
    chunks = _pattern(size, seed)
    picked = b"".join(c for i, c in enumerate(chunks) if first <= i <= (stop - 1) // MiB)
    return picked[start - first * MiB:stop - first * MiB]


def _digest(chunks) -> str:
    h = hashlib.blake2b()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def _race(n: int, call: Callable[[int], Any]) -> list[Any]:
    """Run call(i) in n threads released at once; their results (or exceptions) by i."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except BaseException as exc:  # reported by the test, not lost in the thread
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


class StorageBackendTests:
    """The `StorageBackend` contract. Fixture: ``backend``, a fresh, empty backend."""

    #: threads that race `create` on one key
    race_threads: ClassVar[int] = 8
    #: size of the value streamed in through a file object
    large_value_size: ClassVar[int] = 32 * MiB
    #: size of each version while a reader races a rewriting writer
    atomic_value_size: ClassVar[int] = 1 * MiB
    #: rewrites the writer makes while the reader reads
    atomic_rewrites: ClassVar[int] = 12

    # -- helpers ------------------------------------------------------------------

    @pytest.fixture
    def kit_store(self, backend):
        """A ResultStore on the backend, with the built-in serializers only."""
        from stashflow.plugins import isolated_plugin_manager
        from stashflow.results import ResultStore

        return ResultStore(backend, "pickle", plugins=isolated_plugin_manager(), signing_key=None)

    @staticmethod
    def _keys(backend, prefix: str = "") -> list[str]:
        return sorted(backend.list(prefix))

    # -- the class itself ---------------------------------------------------------

    def test_is_a_storage_backend_with_a_type_slug_and_schemes(self, backend):
        from stashflow.storage import StorageBackend

        assert isinstance(backend, StorageBackend)
        assert isinstance(backend.type_slug, str) and backend.type_slug
        assert isinstance(backend.url_schemes, tuple)
        assert all(isinstance(s, str) and s == s.lower() for s in backend.url_schemes)

    def test_configuration_round_trips_as_a_block(self, backend, stashflow_home):
        slug = backend.save("conformance-kit")
        assert slug == f"{backend.type_slug}/conformance-kit"
        assert type(backend).load("conformance-kit") == backend

    def test_url_for_names_the_key(self, backend):
        assert "some-key" in backend.url_for("some-key")

    # -- write and read -----------------------------------------------------------

    def test_a_fresh_backend_is_empty(self, backend):
        assert self._keys(backend) == []
        assert not backend.exists("anything")

    def test_write_then_read_bytes_bytearray_and_memoryview(self, backend):
        backend.write("bytes", b"hello")
        backend.write("bytearray", bytearray(b"\x00\x01\xff"))
        backend.write("memoryview", memoryview(b"view"))
        backend.write("empty", b"")
        assert backend.read("bytes") == b"hello"
        assert backend.read("bytearray") == b"\x00\x01\xff"
        assert backend.read("memoryview") == b"view"
        assert backend.read("empty") == b""
        assert type(backend.read("bytes")) is bytes

    def test_write_takes_a_binary_file_object(self, backend):
        backend.write("from-file", io.BytesIO(b"streamed in"))
        assert backend.read("from-file") == b"streamed in"

    def test_write_replaces_the_whole_object(self, backend):
        backend.write("k", b"a much longer first version")
        backend.write("k", b"short")
        assert backend.read("k") == b"short"

    def test_nested_and_unicode_keys_round_trip_exactly(self, backend):
        keys = ["dir/sub/leaf.bin", "with space/a b.txt", "UPPER/lower",
                "unicode/\u00fcn\u00efc\u00f6d\u00e9-\u540d\u524d", "dots.in.name/x.y.z"]
        for i, key in enumerate(keys):
            backend.write(key, str(i).encode())
        for i, key in enumerate(keys):
            assert backend.read(key) == str(i).encode()
        assert self._keys(backend) == sorted(keys)

    def test_missing_keys_raise_file_not_found(self, backend):
        with pytest.raises(FileNotFoundError):
            backend.read("missing")
        with pytest.raises(FileNotFoundError):
            backend.open_read("missing/nested")
        backend.write("dir/present", b"x")
        with pytest.raises(FileNotFoundError):
            backend.read("dir")  # a "directory" is not an object
        with pytest.raises(FileNotFoundError):
            backend.read("dir/present/below")

    def test_open_read_is_seekable_for_range_reads(self, backend):
        data = b"".join(_pattern(3 * MiB + 123, seed=1))
        backend.write("ranged", data)
        with backend.open_read("ranged") as f:
            assert f.seekable()
            assert f.read(10) == data[:10]
            assert f.tell() == 10
            f.seek(2 * MiB + 5)
            assert f.read(1000) == data[2 * MiB + 5:2 * MiB + 1005]
            f.seek(-50, io.SEEK_END)
            assert f.read() == data[-50:]
            assert f.read(10) == b""  # at the end
            assert f.seek(0, io.SEEK_END) == len(data)
            f.seek(100)
            f.seek(20, io.SEEK_CUR)
            assert f.read(5) == data[120:125]
            f.seek(0)
            assert _digest(iter(lambda: f.read(MiB), b"")) == _digest([data])

    def test_stat_reports_the_size(self, backend):
        backend.write("sized", b"x" * 1234)
        assert backend.stat("sized")["size"] == 1234

    def test_exists(self, backend):
        assert not backend.exists("k")
        backend.write("k", b"v")
        assert backend.exists("k")
        backend.write("dir/k", b"v")
        assert not backend.exists("dir")  # a "directory" is not an object
        assert not backend.exists("di")

    # -- delete and list ----------------------------------------------------------

    def test_delete_removes_only_that_key(self, backend):
        for key in ("a", "ab", "a2", "b/a", "c/a"):
            backend.write(key, b"v")
        backend.delete("a")
        backend.delete("b/a")
        assert not backend.exists("a")
        with pytest.raises(FileNotFoundError):
            backend.read("a")
        assert self._keys(backend) == ["a2", "ab", "c/a"]

    def test_deleting_a_missing_key_is_a_no_op(self, backend):
        backend.delete("never-written")
        backend.delete("never/written/either")
        backend.write("once", b"v")
        backend.delete("once")
        backend.delete("once")
        assert self._keys(backend) == []

    def test_list_by_plain_string_prefix(self, backend):
        keys = ["a", "abc", "ab/c", "ab/d/e", "ab/d/f", "b/x", "b/y/z"]
        for key in keys:
            backend.write(key, b"v")
        assert self._keys(backend) == sorted(keys)
        assert self._keys(backend, "") == sorted(keys)
        assert self._keys(backend, "a") == ["a", "ab/c", "ab/d/e", "ab/d/f", "abc"]
        assert self._keys(backend, "ab") == ["ab/c", "ab/d/e", "ab/d/f", "abc"]
        assert self._keys(backend, "ab/") == ["ab/c", "ab/d/e", "ab/d/f"]
        assert self._keys(backend, "ab/d/") == ["ab/d/e", "ab/d/f"]
        assert self._keys(backend, "ab/d/e") == ["ab/d/e"]
        assert self._keys(backend, "b/y") == ["b/y/z"]
        assert self._keys(backend, "c") == []
        assert self._keys(backend, "nothing/here/") == []

    def test_list_reflects_deletes(self, backend):
        backend.write("p/1", b"v")
        backend.write("p/2", b"v")
        backend.delete("p/1")
        assert self._keys(backend, "p/") == ["p/2"]

    def test_internal_keys_are_listed_by_prefix_and_kept_apart_from_records(self, backend):
        # The "storage" lock manager keeps lease records under .stashflow/ and lists them
        # by prefix; core leaves such keys out of record listings (a backend need not).
        from stashflow.storage import record_keys

        backend.write("user/key", b"v")
        backend.write(".stashflow/locks/abc/000000000001", b"lease")
        assert self._keys(backend, ".stashflow/locks/abc/") == [".stashflow/locks/abc/000000000001"], (
            "list('.stashflow/locks/abc/') must return the internal keys under that prefix")
        assert ".stashflow/locks/abc/000000000001" in self._keys(backend, ".stashflow")
        assert sorted(record_keys(backend)) == ["user/key"]
        assert sorted(record_keys(backend, "user/")) == ["user/key"]

    # -- create-if-absent ---------------------------------------------------------

    def test_create_only_if_absent(self, backend):
        assert backend.create("k", b"first") is True
        assert backend.create("k", b"second") is False
        assert backend.read("k") == b"first"
        assert backend.create("nested/k", io.BytesIO(b"from a file")) is True
        assert backend.read("nested/k") == b"from a file"
        backend.delete("k")
        assert backend.create("k", b"third") is True
        assert backend.read("k") == b"third"

    def test_create_does_not_replace_a_written_object(self, backend):
        backend.write("k", b"written")
        assert backend.create("k", b"created") is False
        assert backend.read("k") == b"written"

    def test_racing_creates_have_exactly_one_winner(self, backend):
        n = self.race_threads
        results = _race(n, lambda i: backend.create("contended", f"writer {i}".encode() * 100))
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors
        winners = [i for i, r in enumerate(results) if r is True]
        assert len(winners) == 1, results
        assert backend.read("contended") == f"writer {winners[0]}".encode() * 100

    # -- atomicity ----------------------------------------------------------------

    def test_open_write_publishes_only_on_success(self, backend):
        with backend.open_write("streamed") as f:
            f.write(b"part one, ")
            f.write(b"part two")
        assert backend.read("streamed") == b"part one, part two"
        with pytest.raises(RuntimeError), backend.open_write("streamed") as f:
            f.write(b"a replacement that never finishes")
            raise RuntimeError("the writer died")
        assert backend.read("streamed") == b"part one, part two"
        with pytest.raises(RuntimeError), backend.open_write("never") as f:
            f.write(b"half")
            raise RuntimeError("the writer died")
        assert not backend.exists("never")
        assert self._keys(backend) == ["streamed"]

    def test_a_reader_never_sees_a_partial_object(self, backend):
        size = self.atomic_value_size
        versions = [bytes([65 + i]) * size for i in range(3)]
        backend.write("hot", versions[0])
        done = threading.Event()
        seen: list[bytes] = []
        torn: list[str] = []

        def writer() -> None:
            try:
                for i in range(1, self.atomic_rewrites + 1):
                    data = versions[i % len(versions)]
                    if i % 2:
                        backend.write("hot", data)
                    else:
                        with backend.open_write("hot") as f:
                            for start in range(0, size, 64 * 1024):
                                f.write(data[start:start + 64 * 1024])
            finally:
                done.set()

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            while not done.is_set() or not seen:
                try:
                    data = backend.read("hot")
                except FileNotFoundError:  # "nothing" is allowed; a torn object is not
                    continue
                if data not in versions:
                    torn.append(f"{len(data)} bytes starting {data[:8]!r}")
                seen.append(data[:1])
                time.sleep(0)
        finally:
            thread.join()
        assert not torn, f"a reader saw torn objects: {torn[:3]}"
        assert backend.read("hot") == versions[self.atomic_rewrites % len(versions)]

    # -- large values -------------------------------------------------------------

    def test_a_large_value_streams_in_through_a_file_object(self, backend):
        size = self.large_value_size
        backend.write("large", io.BufferedReader(_PatternFile(size, seed=2)))
        assert backend.stat("large")["size"] == size
        with backend.open_read("large") as f:
            assert _digest(iter(lambda: f.read(MiB), b"")) == _digest(_pattern(size, seed=2))
            f.seek(size - MiB - 3)
            assert f.read(3) == _pattern_bytes(size, 2, size - MiB - 3, size - MiB)

    def test_a_large_value_streams_in_through_open_write(self, backend):
        size = self.large_value_size
        with backend.open_write("large/streamed") as f:
            for chunk in _pattern(size, seed=3):
                f.write(chunk)
        with backend.open_read("large/streamed") as f:
            assert _digest(iter(lambda: f.read(MiB), b"")) == _digest(_pattern(size, seed=3))

    # -- through ResultStore ------------------------------------------------------

    def test_round_trip_through_result_store(self, backend, kit_store):
        from stashflow.exceptions import ResultNotFound

        value = {"rows": [1, 2, 3], "name": "conformance", "blob": b"\x00" * 1000}
        meta = kit_store.write("results/a.pickle", value, expiration=3600)
        assert kit_store.read("results/a.pickle") == value
        record = kit_store.read_record("results/a.pickle")
        assert record.value == value
        assert record.metadata.serializer == "pickle" and record.metadata.size == meta.size
        assert kit_store.exists("results/a.pickle")
        assert sorted(kit_store.list("results/")) == ["results/a.pickle"]
        assert kit_store.create("results/a.pickle", "other") is False
        assert kit_store.read("results/a.pickle") == value
        kit_store.delete("results/a.pickle")
        with pytest.raises(ResultNotFound):
            kit_store.read("results/a.pickle")
        kit_store.delete("results/a.pickle")
        assert self._keys(backend) == []

    def test_a_large_record_round_trips_through_result_store(self, backend, kit_store):
        value = b"".join(_pattern(12 * MiB, seed=4))  # past the streaming threshold
        kit_store.write("big", value)
        assert kit_store.read("big") == value
        assert kit_store.read_metadata("big").size > 12 * MiB

    @pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
    def test_a_seeking_load_of_a_large_record_sees_exactly_its_payload(self, backend, signed):
        # Parquet, zip and HDF5 readers seek to the end for a footer, then back: open_read
        # must seek exactly, or the load reads header bytes or the wrong range.
        from stashflow.plugins import isolated_plugin_manager
        from stashflow.results import ResultStore

        store = ResultStore(backend, _FooterSerializer(), plugins=isolated_plugin_manager(),
                            signing_key="kit key" if signed else None)
        value = b"".join(_pattern(9 * MiB + 7, seed=5))  # past the 8 MiB streaming threshold
        store.write("seeking/large", value)
        got = store.read("seeking/large")
        assert got == value, (
            f"ResultStore.read of a {len(value)}-byte record through {type(backend).__name__}."
            f"open_read gave {len(got)} different bytes: its file does not seek exactly")

    def test_a_used_backend_survives_pickling(self, backend):
        # Stores travel to process pools and Dask workers with their backend, after use.
        import pickle

        backend.write("before", b"written before pickling")
        assert backend.read("before") == b"written before pickling"
        try:
            copy = pickle.loads(pickle.dumps(backend))
        except Exception as exc:
            pytest.fail(f"pickle.dumps({type(backend).__name__}) failed once the backend was "
                        f"used: {type(exc).__name__}: {exc}. Keep clients and sockets out of the "
                        "pickled state (StorageBackend.__getstate__ drops connect()'s client)")
        assert copy == backend, "the unpickled backend's configuration differs from the original"
        assert copy.read("before") == b"written before pickling", (
            "the unpickled backend read something else at 'before'")
        copy.write("after", b"written by the copy")
        assert backend.read("after") == b"written by the copy", (
            "the original does not see what the unpickled copy wrote")
        backend.write("again", b"the original still works")
        assert copy.read("again") == b"the original still works"

    def test_bad_keys_are_refused_before_the_backend_is_called(self, backend, kit_store, monkeypatch):
        from stashflow.exceptions import InvalidResultKey

        calls: list[str] = []
        for name in ("write", "open_write", "create", "read", "open_read", "exists", "delete",
                     "stat", "list"):
            original = getattr(backend, name)

            def spy(*args, _name=name, _original=original, **kwargs):
                calls.append(_name)
                return _original(*args, **kwargs)

            monkeypatch.setattr(backend, name, spy, raising=False)
        for key in BAD_KEYS:
            for attempt in (lambda k: kit_store.write(k, "value"), lambda k: kit_store.create(k, "value"),
                            kit_store.read, kit_store.read_metadata, kit_store.exists, kit_store.delete):
                with pytest.raises(InvalidResultKey):
                    attempt(key)
        for prefix in ("../", "/absolute/", "a/../../"):
            with pytest.raises(InvalidResultKey):
                kit_store.list(prefix)
        assert calls == [], f"the backend was called with a bad key: {calls}"
        monkeypatch.undo()
        assert self._keys(backend) == []
        assert self._keys(backend, ".stashflow") == []


class _FooterSerializer(Serializer):
    """bytes, stored as payload + its length in 8 bytes; load seeks to the footer and back."""

    type = "kit/footer"
    streaming = True

    def dumps(self, obj: bytes) -> bytes:
        return bytes(obj) + len(obj).to_bytes(8, "little")

    def loads(self, data) -> bytes:
        data = bytes(data)
        return data[:int.from_bytes(data[-8:], "little")]

    def dump(self, obj: bytes, file) -> None:
        view = memoryview(obj)
        for start in range(0, len(view), MiB):
            file.write(view[start:start + MiB])
        file.write(len(obj).to_bytes(8, "little"))

    def load(self, file) -> bytes:
        end = file.seek(-8, io.SEEK_END)
        size = int.from_bytes(file.read(8), "little")
        if size != end:
            raise ValueError(f"the footer says {size} bytes before it, the file has {end}")
        file.seek(0)
        return file.read(size)
