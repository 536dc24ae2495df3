"""Lock managers: exclusion across threads and processes, leases, breaking, naming."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import fsspec
import pytest
from stashflow import ResultStore
from stashflow.exceptions import LockError, LockManagerNotFound, LockNotHeld, LockTimeout
from stashflow.locking import (
    FileLockManager,
    LockManager,
    MemoryLockManager,
    StorageLockManager,
    default_lock_manager,
    resolve_lock_manager,
)
from stashflow.storage import FsspecStorageBackend, record_keys
from stashflow.storage.memory import MemoryStorage

MANAGERS = ["memory", "file", "storage-on-memory", "storage-on-local"]


def _storage(kind: str, tmp_path):
    if kind.endswith("local") or kind == "file":
        return ResultStore(tmp_path / "results").storage
    return MemoryStorage(name=f"locks-{uuid.uuid4().hex}")


@pytest.fixture(params=MANAGERS)
def manager(request, tmp_path) -> LockManager:
    kind = request.param
    cls = {"memory": MemoryLockManager, "file": FileLockManager}.get(kind, StorageLockManager)
    return cls(_storage(kind, tmp_path), poll_interval=0.02)


def _spawn(code: str, *args: str) -> subprocess.Popen:
    """A Python child running `code`, which prints one line once it holds the lock."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "holding", line
    return proc


def _kill(proc: subprocess.Popen) -> float:
    """SIGKILL the child; returns the moment it was dead."""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    return time.monotonic()


# -- every manager ----------------------------------------------------------------------


def test_only_one_holder_at_a_time_across_threads(manager):
    inside, most, total = [0], [0], [0]
    guard = threading.Lock()

    def worker():
        for _ in range(15):
            with manager.lock("shared-key", lease=5):
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.0005)
                with guard:
                    inside[0] -= 1
                    total[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (most[0], total[0]) == (1, 90)
    assert not manager.is_locked("shared-key")


def test_held_lock_reports_holder_times_out_others_and_frees_on_release(manager):
    assert manager.acquire("k", "alice", lease=5)
    assert manager.is_locked("k")
    assert manager.is_lock_holder("k", "alice")
    assert not manager.is_lock_holder("k", "bob")
    start = time.monotonic()
    assert manager.acquire("k", "bob", timeout=0.2) is False
    assert 0.2 <= time.monotonic() - start < 1.5
    assert manager.wait_for_lock("k", timeout=0.05) is False
    assert manager.acquire("k", "alice", timeout=0)  # re-acquiring renews, does not block

    threading.Timer(0.2, manager.release, ("k", "alice")).start()
    assert manager.wait_for_lock("k", timeout=5) is True
    assert not manager.is_locked("k")
    assert manager.acquire("k", "bob", timeout=0)
    manager.release("k", "bob")


def test_release_by_someone_who_does_not_hold_it_raises(manager):
    with pytest.raises(LockNotHeld):
        manager.release("nobody-holds-this", "alice")
    assert manager.acquire("k2", "alice")
    with pytest.raises(LockNotHeld):
        manager.release("k2", "bob")
    assert manager.is_lock_holder("k2", "alice")
    manager.release("k2", "alice")


def test_lock_context_manager_raises_lock_timeout(manager):
    with manager.lock("busy", "alice"), pytest.raises(LockTimeout, match="busy"), \
            manager.lock("busy", "bob", timeout=0.1):
        pass
    assert not manager.is_locked("busy")


def test_expired_lease_lets_the_next_holder_in_and_the_old_one_cannot_release(manager):
    assert manager.acquire("lapsing", "stuck", lease=0.3)
    start = time.monotonic()
    assert manager.acquire("lapsing", "next", timeout=5)
    waited = time.monotonic() - start
    assert 0.2 <= waited < 1.5
    assert manager.is_lock_holder("lapsing", "next")
    assert not manager.is_lock_holder("lapsing", "stuck")
    assert manager.renew("lapsing", "stuck") is False
    with pytest.raises(LockNotHeld):
        manager.release("lapsing", "stuck")
    manager.release("lapsing", "next")


def test_renewed_lease_keeps_the_lock(manager):
    assert manager.acquire("renewed", "alice", lease=0.4)
    for _ in range(4):
        time.sleep(0.15)
        assert manager.renew("renewed", "alice", lease=0.4)
    assert manager.acquire("renewed", "bob", timeout=0) is False
    manager.release("renewed", "alice")


def test_racing_breakers_of_a_stale_lock_let_exactly_one_in(manager):
    assert manager.acquire("stale", "crashed", lease=0.2)
    time.sleep(0.3)
    assert not manager.is_locked("stale")
    barrier = threading.Barrier(8)
    won = []

    def breaker(i):
        barrier.wait()
        if manager.acquire("stale", f"breaker-{i}", timeout=0, lease=10):
            won.append(i)

    threads = [threading.Thread(target=breaker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert manager.is_lock_holder("stale", f"breaker-{won[0]}")
    manager.release("stale", f"breaker-{won[0]}")


def test_keys_sharing_a_stem_do_not_share_a_lock(manager):
    assert manager.acquire("a.v1", "one")
    assert manager.acquire("a.v2", "two", timeout=0)
    assert manager.acquire("a", "three", timeout=0)
    assert manager.acquire("a.v1", "four", timeout=0) is False
    for key, holder in (("a.v1", "one"), ("a.v2", "two"), ("a", "three")):
        manager.release(key, holder)


def test_invalid_lease_and_timeout_are_refused(manager):
    with pytest.raises(ValueError, match="lease"):
        manager.acquire("k", "alice", lease=0)
    with pytest.raises(ValueError, match="timeout"):
        manager.acquire("k", "alice", timeout=-1)


# -- where the locks live ---------------------------------------------------------------


def test_file_locks_live_under_the_local_root_and_idle_ones_can_be_cleaned(tmp_path):
    store = ResultStore(tmp_path / "results")
    manager = FileLockManager(store.storage)
    assert Path(manager.directory) == tmp_path / "results" / ".stashflow" / "locks"
    assert manager.path_for("a.v1") != manager.path_for("a.v2")
    assert manager.acquire("a.v1", "alice")
    assert manager.acquire("a.v2", "bob")
    manager.release("a.v2", "bob")
    names = sorted(os.listdir(manager.directory))
    assert names == sorted(os.path.basename(manager.path_for(k)) for k in ("a.v1", "a.v2"))
    assert manager.clean() == 1  # a.v2 is idle; a.v1 is held and stays
    assert os.listdir(manager.directory) == [os.path.basename(manager.path_for("a.v1"))]
    assert manager.is_lock_holder("a.v1", "alice")
    manager.release("a.v1", "alice")
    assert manager.clean() == 1 and os.listdir(manager.directory) == []
    assert list(store.list()) == []  # internal files are not results


def test_file_locks_for_non_local_storage_live_in_stashflow_home(stashflow_home):
    manager = FileLockManager(MemoryStorage(name="x"))
    assert Path(manager.directory) == stashflow_home / "locks"
    with manager.lock("k"):
        assert len(os.listdir(stashflow_home / "locks")) == 1


def test_one_directory_reached_through_a_symlink_has_one_lock(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    one = FileLockManager(ResultStore(tmp_path / "real").storage)
    two = FileLockManager(ResultStore(tmp_path / "link").storage)
    assert one.acquire("k", "alice")
    assert two.acquire("k", "bob", timeout=0) is False
    one.release("k", "alice")


def test_file_locks_of_two_storage_roots_do_not_collide(tmp_path):
    one = FileLockManager(ResultStore(tmp_path / "one").storage, directory=tmp_path / "locks")
    two = FileLockManager(ResultStore(tmp_path / "two").storage, directory=tmp_path / "locks")
    assert one.acquire("same-key", "alice")
    assert two.acquire("same-key", "bob", timeout=0)
    one.release("same-key", "alice")
    two.release("same-key", "bob")


@pytest.mark.parametrize("where", ["memory", "local"])
def test_storage_locks_keep_at_most_two_generations_and_are_not_results(tmp_path, where):
    store = ResultStore(f"memory://{uuid.uuid4().hex}" if where == "memory"
                        else tmp_path / "results")
    store.write("a-result", 1)
    manager = StorageLockManager(store.storage)
    for i in range(10):
        with manager.lock("k", f"h{i}"):
            pass
    objects = list(store.storage.list(".stashflow/locks/"))
    assert len(objects) == 2
    assert all(name.startswith(".stashflow/locks/") for name in objects)
    assert list(store.list()) == ["a-result"]


def test_storage_locks_work_on_a_generic_fsspec_backend():
    class FsspecMemory(FsspecStorageBackend):
        type_slug = "test-fsspec-memory-locks"
        root_path: str = f"/locks-{uuid.uuid4().hex}"

        def filesystem(self):
            return fsspec.filesystem("memory")

        def root(self):
            return self.root_path

    backend = FsspecMemory()
    backend.write("a-result", b"x")
    manager = StorageLockManager(backend)
    assert manager.acquire("k", "alice")
    assert manager.acquire("k", "bob", timeout=0) is False
    manager.release("k", "alice")
    assert manager.acquire("k", "bob", timeout=0)
    assert list(record_keys(backend)) == ["a-result"]
    assert len(list(backend.list(".stashflow/locks/"))) == 2


def test_storage_lock_manager_refuses_a_backend_that_hides_internal_keys():
    class Hiding(MemoryStorage):
        type_slug = "hiding-memory"

        def list(self, prefix=""):
            return (k for k in super().list(prefix) if ".stashflow" not in k)

    manager = StorageLockManager(Hiding(name=uuid.uuid4().hex))
    with pytest.raises(LockError, match="list"):
        manager.acquire("k", "alice")


# -- choosing a manager -----------------------------------------------------------------


def test_default_lock_manager_is_the_one_the_backend_declares(tmp_path):
    from stashflow.storage import StorageBackend

    class Remote(MemoryStorage):
        type_slug = "remote-ish"
        default_lock_manager = "storage"  # as if its objects were shared between machines

    class Declares(StorageBackend):  # a third-party backend that says nothing
        type_slug = "says-nothing"

    assert type(default_lock_manager(ResultStore("memory://x"))) is MemoryLockManager
    local = default_lock_manager(ResultStore(tmp_path))
    assert type(local) is FileLockManager
    assert local.directory == str(tmp_path / ".stashflow" / "locks")  # its lock_directory()
    assert type(default_lock_manager(Remote(name="r"))) is StorageLockManager
    assert Declares.default_lock_manager == "storage" and Declares().lock_directory() is None


def test_lock_managers_resolve_by_name_or_instance(tmp_path):
    store = ResultStore(tmp_path)
    assert type(resolve_lock_manager("storage", store)) is StorageLockManager
    assert type(resolve_lock_manager("memory", store)) is MemoryLockManager
    mine = MemoryLockManager(store.storage)
    assert resolve_lock_manager(mine, store) is mine
    with pytest.raises(LockManagerNotFound, match="registered: file, memory, storage"):
        resolve_lock_manager("redis", store)
    with pytest.raises(TypeError):
        resolve_lock_manager(42, store)


def test_lock_managers_are_registered_through_the_plugin_hook():
    from stashflow.registry import get_registry

    registry = get_registry()
    assert set(registry.lock_managers) >= {"memory", "file", "storage"}
    assert registry.owner("lock_manager", "file") == "stashflow.locking.selection"


# -- processes --------------------------------------------------------------------------

HOLD = """
import sys, time
from stashflow import ResultStore
from stashflow.locking import {cls}
manager = {cls}(ResultStore(sys.argv[1]).storage)
{acquire}
print("holding", flush=True)
time.sleep(60)
"""


def test_file_lock_of_a_killed_process_is_free_at_once(tmp_path):
    root = str(tmp_path / "results")
    proc = _spawn(HOLD.format(cls="FileLockManager",
                              acquire="assert manager.acquire('k', 'child', lease=30)"), root)
    manager = FileLockManager(ResultStore(root).storage)
    assert manager.is_locked("k")
    assert manager.acquire("k", "parent", timeout=0) is False
    dead = _kill(proc)
    assert manager.acquire("k", "parent", timeout=5, lease=30)
    assert time.monotonic() - dead < 0.5  # the kernel dropped the flock; no lease to wait out
    manager.release("k", "parent")


def test_file_lock_of_a_stuck_process_is_broken_after_its_lease(tmp_path):
    root = str(tmp_path / "results")
    # The child holds the flock and is alive, but never renews its 1 s lease.
    proc = _spawn(HOLD.format(cls="FileLockManager",
                              acquire="assert manager.acquire('k', 'child', lease=1)"), root)
    try:
        manager = FileLockManager(ResultStore(root).storage)
        start = time.monotonic()
        assert manager.acquire("k", "parent", timeout=10)
        assert 0.5 < time.monotonic() - start < 2.0
        assert manager.is_lock_holder("k", "parent")
        manager.release("k", "parent")
    finally:
        _kill(proc)


def test_storage_lock_of_a_killed_process_delays_others_at_most_its_lease(tmp_path):
    root = str(tmp_path / "results")
    # The child holds the lock with a 1.5 s lease that a keepalive thread renews.
    proc = _spawn(HOLD.format(
        cls="StorageLockManager",
        acquire="held = manager.lock('k', 'child', lease=1.5); held.__enter__()"), root)
    manager = StorageLockManager(ResultStore(root).storage)
    time.sleep(2.0)  # longer than the lease: the child's renewals keep it held
    assert manager.acquire("k", "parent", timeout=0) is False
    dead = _kill(proc)
    assert manager.acquire("k", "parent", timeout=10)
    assert time.monotonic() - dead <= 1.5 + 0.3
    manager.release("k", "parent")


def test_lock_errors_are_typed():
    assert issubclass(LockTimeout, TimeoutError) and issubclass(LockTimeout, LockError)
    assert issubclass(LockManagerNotFound, LookupError)
