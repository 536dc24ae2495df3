"""LocalFileSystem: atomic writes, O_EXCL-style create, missing keys, listing, URLs."""

import io
import os
import threading
from pathlib import Path

import pytest
from stashflow import ResultStore
from stashflow.exceptions import ResultNotFound, SerializationError
from stashflow.keys import TEMP_PREFIX as TMP_PREFIX
from stashflow.maintenance import temp_keys
from stashflow.registry import resolve_storage
from stashflow.storage import record_keys
from stashflow_local import LocalFileSystem


def _temp_files(root: Path) -> list[str]:
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.startswith(TMP_PREFIX)]


@pytest.fixture
def fs(tmp_path):
    return LocalFileSystem(basepath=str(tmp_path / "root"))


def test_write_read_open_read_exists_stat(fs, tmp_path):
    fs.write("a/b/c", b"hello world")
    assert (tmp_path / "root" / "a" / "b" / "c").read_bytes() == b"hello world"
    assert fs.read("a/b/c") == b"hello world"
    assert fs.exists("a/b/c")
    assert not fs.exists("a/b")  # a directory is not a record
    assert not fs.exists("nope")
    with fs.open_read("a/b/c") as f:
        f.seek(6)
        assert f.read(3) == b"wor"
        assert f.seekable()
    assert fs.stat("a/b/c")["size"] == 11
    fs.write("m", memoryview(b"mv"))
    fs.write("ba", bytearray(b"ba"))
    fs.write("f", io.BytesIO(b"from a file" * 100_000))
    assert fs.read("m") == b"mv" and fs.read("ba") == b"ba"
    assert fs.read("f") == b"from a file" * 100_000
    assert _temp_files(tmp_path) == []


def test_overwrite_replaces_the_whole_record(fs):
    fs.write("k", b"x" * 1000)
    fs.write("k", b"short")
    assert fs.read("k") == b"short"


@pytest.mark.parametrize("method", ["read", "open_read", "stat"])
def test_missing_keys_raise_file_not_found(fs, method):
    fs.write("dir/file", b"1")
    for key in ("missing", "dir", "dir/file/child", "nodir/x"):
        with pytest.raises(FileNotFoundError):
            getattr(fs, method)(key)


def test_delete_is_a_no_op_when_missing(fs):
    fs.write("dir/file", b"1")
    fs.delete("missing")
    fs.delete("dir")  # a directory, not a record
    fs.delete("dir/file/child")
    assert fs.read("dir/file") == b"1"
    fs.delete("dir/file")
    assert not fs.exists("dir/file")
    fs.delete("dir/file")


def test_list_gives_everything_and_record_keys_leave_out_temp_files(fs, tmp_path):
    for key in ("a/1", "a/2", "ab", "b/c/d", "b/.hidden", "x.stashflow"):
        fs.write(key, b"v")
    (tmp_path / "root" / "a" / f"{TMP_PREFIX}123-dead").write_bytes(b"left by a crash")
    records = ["a/1", "a/2", "ab", "b/.hidden", "b/c/d", "x.stashflow"]
    assert sorted(fs.list()) == sorted([*records, f"a/{TMP_PREFIX}123-dead"])
    assert sorted(record_keys(fs)) == records
    assert sorted(record_keys(fs, "a")) == ["a/1", "a/2", "ab"]
    assert sorted(record_keys(fs, "a/")) == ["a/1", "a/2"]
    assert list(fs.list("b/c/")) == ["b/c/d"]
    assert list(fs.list("b/c/d")) == ["b/c/d"]
    assert list(fs.list("zzz")) == []
    assert list(fs.list("zzz/")) == []
    assert temp_keys(fs) == [f"a/{TMP_PREFIX}123-dead"]
    assert list(LocalFileSystem(basepath=str(tmp_path / "absent")).list()) == []


def test_create_is_create_if_absent(fs, tmp_path):
    assert fs.create("c/k", b"first") is True
    assert fs.create("c/k", b"second") is False
    assert fs.read("c/k") == b"first"
    assert fs.create("c/j", io.BytesIO(b"from file")) is True
    assert fs.read("c/j") == b"from file"
    assert _temp_files(tmp_path) == []


def test_concurrent_creates_have_exactly_one_winner(fs, tmp_path):
    results, barrier = [], threading.Barrier(8)

    def racer(i):
        barrier.wait()
        results.append((fs.create("race", f"writer {i}".encode() * 1000), i))

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for ok, i in results if ok]
    assert len(winners) == 1
    assert fs.read("race") == f"writer {winners[0]}".encode() * 1000
    assert _temp_files(tmp_path) == []


def test_a_reader_sees_the_old_record_until_the_new_one_is_complete(fs, tmp_path):
    fs.write("k", b"old")
    with fs.open_write("k") as f:
        f.write(b"new, half")
        assert fs.read("k") == b"old"
        f.write(b" and the rest")
        assert fs.read("k") == b"old"
    assert fs.read("k") == b"new, half and the rest"
    assert _temp_files(tmp_path) == []


def test_a_failed_write_leaves_the_old_record_and_no_temp_file(fs, tmp_path):
    fs.write("k", b"old")
    with pytest.raises(RuntimeError), fs.open_write("k") as f:
        f.write(b"partial" * 100_000)
        raise RuntimeError("writer died")
    assert fs.read("k") == b"old"
    assert _temp_files(tmp_path) == []
    with pytest.raises(RuntimeError), fs.open_write("fresh/k") as f:
        raise RuntimeError("writer died")
    assert not fs.exists("fresh/k")
    assert _temp_files(tmp_path) == []


class Explodes:
    def __reduce__(self):
        raise RuntimeError("pickling failed half way")


def test_a_value_whose_pickling_fails_half_way_leaves_the_previous_record(tmp_path):
    store = ResultStore(tmp_path / "root", "pickle")
    store.write("k", "previous")
    before = (tmp_path / "root" / "k").read_bytes()
    with pytest.raises(SerializationError, match="half way"):
        store.write("k", [os.urandom(2_000_000), Explodes()])
    assert (tmp_path / "root" / "k").read_bytes() == before
    assert store.read("k") == "previous"
    assert _temp_files(tmp_path) == []
    with pytest.raises(SerializationError):
        store.write("new/k", [b"x" * 100, Explodes()])
    assert not store.exists("new/k")
    assert _temp_files(tmp_path) == []
    with pytest.raises(SerializationError):
        ResultStore(tmp_path / "root", "json").write("k", object())
    assert store.read("k") == "previous"
    assert _temp_files(tmp_path) == []


def test_result_store_missing_key_is_result_not_found(tmp_path):
    store = ResultStore(tmp_path / "root")
    store.write("dir/k", 1)
    for key in ("missing", "dir", "dir/k/child"):
        with pytest.raises(ResultNotFound) as excinfo:
            store.read(key)
        assert isinstance(excinfo.value, KeyError)
        assert repr(key) in str(excinfo.value)
    with pytest.raises(KeyError):
        store.read_metadata("missing")
    store.delete("missing")
    assert not store.exists("dir")


def test_result_store_create_keeps_the_first(tmp_path):
    store = ResultStore(tmp_path / "root")
    assert store.create("k", "first") is True
    assert store.create("k", "second") is False
    assert store.read("k") == "first"
    assert _temp_files(tmp_path) == []


def test_long_unicode_segments_fit_with_their_temp_file(fs):
    key = "d/" + "\u20ac" * 85  # 255 bytes: the most a segment may have
    fs.write(key, b"v")
    assert fs.read(key) == b"v"
    assert fs.create("e/" + "\u00e9" * 127, b"w")


def test_fsync_option(tmp_path):
    fs = LocalFileSystem(basepath=str(tmp_path), fsync=True)
    fs.write("k", b"durable")
    assert fs.create("j", b"too")
    assert fs.read("k") == b"durable"


def test_default_basepath_is_the_local_storage_setting(stashflow_home, tmp_path, monkeypatch):
    assert LocalFileSystem().basepath == str(stashflow_home / "storage")
    monkeypatch.setenv("STASHFLOW_LOCAL_STORAGE_PATH", str(tmp_path / "elsewhere"))
    assert LocalFileSystem().basepath == str(tmp_path / "elsewhere")
    ResultStore().write("k", 1)
    assert (tmp_path / "elsewhere" / "k").is_file()


def test_storage_specs_resolve_to_the_same_directory(tmp_path, monkeypatch):
    target = tmp_path / "with space" / "caf\u00e9"
    expected = LocalFileSystem(basepath=str(target))
    assert resolve_storage(target) == expected
    assert resolve_storage(str(target)) == expected
    assert resolve_storage(target.as_uri()) == expected
    assert resolve_storage(f"file://{target}") == expected
    assert resolve_storage(f"file://localhost{target.as_uri()[7:]}") == expected
    assert resolve_storage(expected.url_for()) == expected
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_storage("~/with space/caf\u00e9") == expected
    assert resolve_storage(Path("~/with space/caf\u00e9")) == expected
    ResultStore(target.as_uri()).write("k", 1)
    assert (target / "k").is_file()


def test_url_for_names_the_file(fs, tmp_path):
    assert fs.url_for("a/b") == (tmp_path / "root" / "a" / "b").as_uri()


def test_create_works_where_hard_links_are_not_supported(fs, tmp_path, monkeypatch):
    import errno

    import stashflow_local

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(stashflow_local.os, "link", no_links)
    assert fs.create("k", b"first") is True
    assert fs.create("k", b"second") is False
    assert fs.read("k") == b"first"
    assert ResultStore(fs).create("r", {"v": 1}) is True
    assert ResultStore(fs).read("r") == {"v": 1}
    assert _temp_files(tmp_path) == []


def test_fsync_covers_the_file_and_its_directory(tmp_path, monkeypatch):
    import stashflow_local

    synced = []
    real = os.fsync
    monkeypatch.setattr(stashflow_local.os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    LocalFileSystem(basepath=str(tmp_path), fsync=True).write("k", b"v")
    assert len(synced) == 2
    LocalFileSystem(basepath=str(tmp_path)).write("k", b"v")
    assert len(synced) == 2


def test_readers_racing_writers_see_whole_records_only(tmp_path):
    import time

    store = ResultStore(tmp_path / "root", "pickle")
    values = [bytes([i]) * (200_000 + i * 1000) for i in range(4)]
    store.write("k", values[0])
    stop = time.monotonic() + 0.7
    seen, errors = set(), []

    def writer(i):
        while time.monotonic() < stop:
            store.write("k", values[i])

    def reader():
        while time.monotonic() < stop:
            try:
                value = store.read("k")
            except Exception as exc:  # any failure, corrupted or missing, is a torn write
                errors.append(exc)
                return
            if value not in values:
                errors.append(f"torn value of {len(value)} bytes")
                return
            seen.add(value[:1] + len(value).to_bytes(4, "big"))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(1, 4)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(seen) >= 2
    assert _temp_files(tmp_path) == []


def test_a_symlink_inside_the_root_cannot_redirect_writes_or_deletes(tmp_path):
    from stashflow.exceptions import StorageError

    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "victim").write_bytes(b"keep")
    (root / "link").symlink_to(outside)
    (root / "deep").mkdir()
    (root / "deep" / "link").symlink_to(outside)
    store = ResultStore(root)
    for key in ("link/x", "link/new/dir/x", "deep/link/x"):
        with pytest.raises(StorageError, match="symbolic link"):
            store.write(key, 1)
        with pytest.raises(StorageError, match="symbolic link"):
            store.create(key, 1)
    with pytest.raises(StorageError, match="symbolic link"):
        store.delete("link/victim")
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_bytes() == b"keep"
    # a root that is itself a link is fine
    (tmp_path / "root-link").symlink_to(root)
    ResultStore(tmp_path / "root-link").write("ok/k", 1)
    assert ResultStore(root).read("ok/k") == 1


class CountingFileSystem(LocalFileSystem):
    """Records which write entry point ResultStore used."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = []

    def write(self, key, data):
        self.calls.append(("write", key, type(data).__name__))
        super().write(key, data)

    def open_write(self, key):
        self.calls.append(("open_write", key))
        return super().open_write(key)


def test_a_small_record_is_one_storage_write_and_a_large_one_streams(tmp_path):
    # the small path is what every persisted task takes: one bytes write, no file object
    fs = CountingFileSystem(basepath=str(tmp_path))
    store = ResultStore(fs, "pickle")
    store.write("small", {"a": 1})
    assert fs.calls == [("write", "small", "bytes")]
    fs.calls.clear()
    blob = os.urandom(9 * 1024 * 1024)
    store.write("big", blob)
    assert fs.calls == [("open_write", "big")]
    assert store.read("small") == {"a": 1} and store.read("big") == blob
    assert _temp_files(tmp_path) == []
