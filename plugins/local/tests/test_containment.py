"""LocalFileSystem never serves, lists or removes anything outside its root, and never blocks.

Planted entries: symbolic links (to a file, to a directory) leading outside the
root, FIFOs and sockets at a key, a `.stashflow` that is a link. Reads refuse
them with StorageEntryRefused, `exists` says False, listings report them
instead of following them, writes replace them with a regular file.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import stat
import threading

import pytest
from stashflow import ResultStore
from stashflow.exceptions import StorageEntryRefused
from stashflow.storage import record_keys
from stashflow_local import LocalFileSystem

SECRET = b"SECRET FROM OUTSIDE"


@pytest.fixture
def planted(tmp_path):
    """root/ holding two records and links to outside/ at flat and nested keys."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    fs = LocalFileSystem(basepath=str(root))
    fs.write("mine", b"mine")
    fs.write("sub/mine", b"sub mine")
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    (root / "file-link").symlink_to(outside / "secret")
    (root / "dir-link").symlink_to(outside)
    (root / "sub" / "file-link").symlink_to(outside / "secret")
    (root / "sub" / "dir-link").symlink_to(outside)
    return fs, root, outside


OUTSIDE_KEYS = ["file-link", "dir-link/secret", "sub/file-link", "sub/dir-link/secret"]


def _open_and_read(fs, key):
    with fs.open_read(key) as f:
        return f.read()


@pytest.mark.parametrize("key", OUTSIDE_KEYS)
def test_reads_refuse_a_link_leading_outside_the_root(planted, key):
    fs, root, _ = planted
    for read in (fs.read, lambda k: _open_and_read(fs, k), fs.stat):
        with pytest.raises(StorageEntryRefused, match="symbolic link leading outside") as excinfo:
            read(key)
        message = str(excinfo.value)
        assert message.startswith(f"local-file-system: refusing {fs.url_for(key)}: it ")
        assert str(root) in message and "remove it" in message
    assert fs.exists(key) is False
    assert fs.read("mine") == b"mine" and fs.read("sub/mine") == b"sub mine"


def test_links_that_stay_inside_the_root_are_followed(tmp_path):
    root = tmp_path / "root"
    fs = LocalFileSystem(basepath=str(root))
    fs.write("real/k", b"value")
    (root / "alias").symlink_to(root / "real")
    (root / "k-link").symlink_to(root / "real" / "k")
    (root / "real" / "relative").symlink_to("k")
    for key in ("alias/k", "k-link", "real/relative", "alias/relative"):
        assert fs.read(key) == b"value"
        assert _open_and_read(fs, key) == b"value"
        assert fs.exists(key) and fs.stat(key)["size"] == 5


def test_listings_never_follow_a_link_out_of_the_root(planted):
    fs, root, _ = planted
    assert sorted(fs.list()) == ["mine", "sub/mine"]
    for prefix in ("dir-link/", "dir-link/s", "sub/dir-link/"):
        assert list(fs.list(prefix)) == []
    entries = dict(fs.list_entries())
    assert entries.pop("mine") is None and entries.pop("sub/mine") is None
    assert sorted(entries) == ["dir-link", "file-link", "sub/dir-link", "sub/file-link"]
    assert all(why == f"is a symbolic link leading outside {root}" for why in entries.values())
    assert dict(fs.list_entries("dir-link/")) == {
        "dir-link": f"is reached through a symbolic link leading outside {root}"}


def test_delete_never_removes_anything_outside_the_root(planted):
    fs, _, outside = planted
    for key in ("dir-link/secret", "sub/dir-link/secret"):
        with pytest.raises(StorageEntryRefused, match="symbolic link leading outside"):
            fs.delete(key)
    fs.delete("file-link")  # the link itself goes; what it pointed to stays
    fs.delete("sub/file-link")
    assert (outside / "secret").read_bytes() == SECRET
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


def _within_a_second(call):
    """(finished, value or exception): runs `call` in a thread, waits at most one second."""
    box = {}

    def run():
        try:
            box["value"] = call()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(1.0)
    return not thread.is_alive(), box.get("error", box.get("value"))


def _unblock(fifo) -> None:
    """Let a reader stuck opening `fifo` go (it then reads an empty file)."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.parametrize("key", ["pipe", "sub/pipe"])
def test_a_fifo_at_a_key_is_refused_at_once_never_waited_on(tmp_path, key):
    root = tmp_path / "root"
    fs = LocalFileSystem(basepath=str(root))
    fs.write("sub/other", b"x")
    fifo = root / key
    os.mkfifo(fifo)
    store = ResultStore(fs)
    calls = {"read": fs.read, "open_read": lambda k: _open_and_read(fs, k), "stat": fs.stat,
             "ResultStore.read": store.read, "ResultStore.read_metadata": store.read_metadata}
    try:
        for name, call in calls.items():
            finished, outcome = _within_a_second(lambda call=call: call(key))
            assert finished, f"{name} of a FIFO blocked"
            assert isinstance(outcome, StorageEntryRefused), f"{name}: {outcome!r}"
            assert "is a FIFO, not a regular file" in str(outcome)
        assert fs.exists(key) is False and store.exists(key) is False
    finally:
        _unblock(fifo)
    finished, _ = _within_a_second(lambda: fs.write(key, b"a record"))
    assert finished
    assert stat.S_ISREG(os.lstat(fifo).st_mode) and fs.read(key) == b"a record"


def test_a_socket_at_a_key_is_refused(tmp_path):
    root = tmp_path / "r"
    fs = LocalFileSystem(basepath=str(root))
    fs.write("x", b"x")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
        with pytest.raises(StorageEntryRefused, match="is a socket, not a regular file"):
            fs.read("sock")
        with pytest.raises(StorageEntryRefused, match="is a socket"):
            fs.stat("sock")
        assert fs.exists("sock") is False
        assert dict(fs.list_entries()) == {"x": None, "sock": "is a socket, not a regular file"}


def test_writes_replace_a_planted_link_and_never_write_through_it(planted):
    fs, root, outside = planted
    fs.write("file-link", b"new")
    with fs.open_write("sub/file-link") as f:
        f.write(b"streamed")
    assert (outside / "secret").read_bytes() == SECRET
    for key, value in (("file-link", b"new"), ("sub/file-link", b"streamed")):
        assert stat.S_ISREG(os.lstat(root / key).st_mode) and fs.read(key) == value
    (root / "k").symlink_to(outside / "absent")
    assert fs.create("k", b"v") is False  # something is there: not replaced, not followed
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


@pytest.fixture
def umask0():
    old = os.umask(0)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_directories_for_keys_are_made_0755_level_by_level_and_records_are_not_writable_by_others(
        tmp_path, umask0):
    root = tmp_path / "new" / "root"
    fs = LocalFileSystem(basepath=str(root))
    fs.write("a/b/c/k", b"v")
    with fs.open_write("d/e/k") as f:
        f.write(b"v")
    assert fs.create("f/g/k", b"v")
    for d in (tmp_path / "new", root, root / "a", root / "a" / "b", root / "a" / "b" / "c",
              root / "d", root / "d" / "e", root / "f", root / "f" / "g"):
        assert _mode(d) == 0o755, d
    for key in ("a/b/c/k", "d/e/k", "f/g/k"):
        assert _mode(root / key) & 0o022 == 0


def test_the_internal_area_is_private_and_never_a_link(tmp_path, umask0):
    root = tmp_path / "root"
    fs = LocalFileSystem(basepath=str(root))
    assert fs.internal_directory("locks") == str(root / ".stashflow" / "locks")
    assert _mode(root / ".stashflow") == 0o700 and _mode(root / ".stashflow" / "locks") == 0o700
    fs.write(".stashflow/records/x/1", b"lock record")  # internal keys: private directories too
    assert _mode(root / ".stashflow" / "records") == 0o700
    assert _mode(root / ".stashflow" / "records" / "x") == 0o700
    assert list(record_keys(fs)) == []


@pytest.mark.parametrize("plant", ["link", "inner-link", "file"])
def test_a_planted_stashflow_entry_is_refused_and_nothing_is_made_outside(tmp_path, plant):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    if plant == "link":
        (root / ".stashflow").symlink_to(outside)
        where, why = ".stashflow", "is a symbolic link"
    elif plant == "inner-link":
        (root / ".stashflow").mkdir()
        (root / ".stashflow" / "locks").symlink_to(outside)
        where, why = ".stashflow/locks", "is a symbolic link"
    else:
        (root / ".stashflow").write_bytes(b"")
        where, why = ".stashflow", "is not a directory"
    fs = LocalFileSystem(basepath=str(root))
    with pytest.raises(StorageEntryRefused, match=re.escape(f"{fs.url_for(where)}: it {why}")):
        fs.internal_directory("locks")
    assert list(outside.iterdir()) == []
