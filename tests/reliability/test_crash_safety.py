"""A writer SIGKILLed at random moments never leaves a torn or stale record behind.

A forked child persists 20-50 MiB values through ResultStore on local storage
in a loop and reports each write once `write` has returned; the parent kills
it at a random moment, 100 times. After every kill each key loads a complete
value (rebuilt and compared byte for byte) that is at least as new as the last
acknowledged write of that key, or the key is a clean miss; the listing never
shows a temp file; gc reclaims the temp files the dead writers left.
"""

from __future__ import annotations

import os
import random
import signal
import time

from stashflow.exceptions import ResultNotFound
from stashflow.maintenance import temp_keys
from stashflow.results import ResultStore

KEYS = ("alpha", "beta/gamma", "delta")
KILLS = 100
MiB = 1024 * 1024
BLOCK = 64 * 1024


def blob(key: str, version: int, size: int) -> bytes:
    """The payload written for (key, version): rebuilt from them to check a read."""
    block = random.Random(f"{key}:{version}").randbytes(BLOCK)
    return (block * (size // BLOCK + 1))[:size]


def value_for(key: str, version: int, rng: random.Random) -> tuple[str, int, int, bytes]:
    size = rng.randint(20 * MiB, 50 * MiB)
    return (key, version, size, blob(key, version, size))


def _writer(root: str, first_version: int, ack_fd: int, seed: int) -> None:
    """The child: write forever, acknowledging each write after it returned."""
    rng = random.Random(seed)
    store = ResultStore(root, serializer="pickle")
    version = first_version
    while True:
        key = KEYS[version % len(KEYS)]
        store.write(key, value_for(key, version, rng))
        os.write(ack_fd, f"{key} {version}\n".encode())
        version += 1


def _run_and_kill(root: str, first_version: int, delay: float, seed: int) -> list[tuple[str, int]]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_fd)
        try:
            _writer(root, first_version, write_fd, seed)
        finally:
            os._exit(1)
    os.close(write_fd)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    acks = []
    for line in b"".join(chunks).decode().splitlines():
        key, version = line.split()
        acks.append((key, int(version)))
    return acks


def _check_store(store: ResultStore, acked: dict[str, int], started_below: int,
                 verified: dict[str, tuple]) -> None:
    """Every key: a miss, or a whole value not older than its last acknowledged write.

    A file already verified and unchanged since (same inode, mtime and size) is not read again.
    """
    listed = set(store.list())
    assert listed <= set(KEYS), f"the listing shows non-record files: {listed - set(KEYS)}"
    for key in KEYS:
        try:
            st = os.stat(store.storage._path(key))
            if verified.get(key) == (st.st_ino, st.st_mtime_ns, st.st_size):
                continue
        except FileNotFoundError:
            pass
        try:
            got_key, version, size, data = store.read(key)
        except ResultNotFound:
            assert key not in acked, f"{key!r} was acknowledged at version {acked[key]} but is gone"
            assert key not in listed
            continue
        assert key in listed
        assert got_key == key
        assert version < started_below
        assert version >= acked.get(key, -1), (
            f"{key!r} went back from acknowledged version {acked[key]} to {version}")
        assert 20 * MiB <= size <= 50 * MiB and len(data) == size
        assert data == blob(key, version, size), f"{key!r} version {version} has wrong bytes"
        verified[key] = (st.st_ino, st.st_mtime_ns, st.st_size)


def test_sigkilled_writers_leave_whole_records_or_misses_and_gc_takes_their_temp_files(tmp_path):
    root = tmp_path / "results"
    store = ResultStore(root)
    rng = random.Random()
    acked: dict[str, int] = {}
    verified: dict[str, tuple] = {}
    reclaimed = 0
    started = time.monotonic()
    for kill in range(KILLS):
        first_version = kill * 1000
        for key, version in _run_and_kill(str(root), first_version, rng.uniform(0.005, 0.15),
                                          rng.getrandbits(32)):
            acked[key] = max(acked.get(key, -1), version)
        _check_store(store, acked, first_version + 1000, verified)
        if kill % 10 == 9:  # the writer is dead: every temp file is an orphan
            before = set(temp_keys(store.storage))
            report = store.gc(temp_grace=0)
            assert sorted(report.temp_files) == sorted(before)
            assert list(temp_keys(store.storage)) == []
            assert report.removed == []  # no record expires: gc keeps them all
            reclaimed += len(report.temp_files)
            _check_store(store, acked, first_version + 1000, verified)
    assert acked, "no write ever completed: the kills came too early to test anything"
    assert reclaimed > 0, "no kill ever landed inside a write"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == sorted(k for k in KEYS if k in set(store.list()))
    assert time.monotonic() - started < 120


def test_gc_takes_a_temp_file_only_once_it_is_older_than_the_grace_period(tmp_path):
    store = ResultStore(tmp_path / "results")
    with store.storage.open_write("live") as f:
        f.write(b"partial")
        f.flush()
        [tmp] = temp_keys(store.storage)
        path = tmp_path / "results" / tmp
        assert store.gc().temp_files == []  # default grace: one hour
        assert store.gc(temp_grace="10m", dry_run=True).temp_files == []
        os.utime(path, (time.time() - 11 * 60,) * 2)
        assert store.gc(temp_grace="10m", dry_run=True).temp_files == [tmp]
        assert path.exists()  # a dry run removes nothing
        os.utime(path, None)  # the writer wrote again: live
        assert store.gc(temp_grace="10m").temp_files == []
    assert store.storage.read("live") == b"partial"
    assert list(temp_keys(store.storage)) == []
