"""Prefect's store and lock API: ResultStore(result_storage=, lock_manager=), the store's lock
methods, LockManager.acquire_lock & co, FileSystemLockManager, and transactions using the
store's lock manager (real memory and file managers, local storage)."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
import uuid
from pathlib import Path

import pytest
from stashflow import ResultStore
from stashflow.exceptions import LockManagerNotFound, LockNotHeld
from stashflow.isolation import IsolationLevel
from stashflow.locking import (
    FileLockManager,
    LockManager,
    MemoryLockManager,
    StorageLockManager,
    resolve_lock_manager,
)
from stashflow.locking.filesystem import FileSystemLockManager
from stashflow.locking.memory import MemoryLockManager as MemoryLockManagerByModule
from stashflow.storage.memory import MemoryStorage
from stashflow.transactions import atransaction, transaction


def _key() -> str:
    return f"k-{uuid.uuid4().hex}"


def _run_or_fail(main, limit: float = 20.0):
    """asyncio.run(main()) in a daemon thread: a loop blocked for good fails the test
    instead of hanging it."""
    out: list = []

    def run():
        try:
            out.append(("ok", asyncio.run(main())))
        except BaseException as exc:
            out.append(("error", exc))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(limit)
    assert out, f"the event loop did not finish within {limit} s (blocked?)"
    kind, value = out[0]
    if kind == "error":
        raise value
    return value


def _in_thread(fn):
    out = []
    worker = threading.Thread(target=lambda: out.append(fn()))
    worker.start()
    worker.join()
    return out[0]


# -- ResultStore's constructor ----------------------------------------------------------


def test_result_storage_is_another_name_for_storage(tmp_path):
    store = ResultStore(result_storage=tmp_path / "r", serializer="json")
    assert store.storage.location() == ResultStore(tmp_path / "r").storage.location()
    store.write("x", [1])
    assert ResultStore(tmp_path / "r").read("x") == [1]
    with pytest.raises(TypeError, match=r"storage.*result_storage"):
        ResultStore(tmp_path / "a", result_storage=tmp_path / "b")
    with pytest.raises(TypeError, match=r"storage.*result_storage"):
        ResultStore(storage=tmp_path / "a", result_storage=tmp_path / "b")


def test_lock_manager_is_none_by_default_and_then_the_storages_own(tmp_path):
    local = ResultStore(tmp_path)
    assert local.lock_manager is None
    assert type(resolve_lock_manager(None, local)) is FileLockManager
    memory = ResultStore("memory://prefect-api")
    assert memory.lock_manager is None
    assert type(resolve_lock_manager(None, memory)) is MemoryLockManager


def test_lock_manager_takes_an_instance_or_a_registered_name(tmp_path):
    mine = MemoryLockManager()
    store = ResultStore(tmp_path, lock_manager=mine)
    assert store.lock_manager is mine and resolve_lock_manager(None, store) is mine
    named = ResultStore(tmp_path, lock_manager="memory")
    assert named.lock_manager == "memory"
    assert type(resolve_lock_manager(None, named)) is MemoryLockManager
    with pytest.raises(LockManagerNotFound):
        ResultStore(tmp_path, lock_manager="no-such-manager")
    with pytest.raises(TypeError, match="lock_manager"):
        ResultStore(tmp_path, lock_manager=object())
    store.lock_manager = None  # settable, as a pydantic field is
    assert type(resolve_lock_manager(None, store)) is FileLockManager


def test_a_store_with_a_lock_manager_pickles(tmp_path):
    for manager in (MemoryLockManager(), FileSystemLockManager(tmp_path / "locks"), None):
        store = ResultStore(tmp_path, lock_manager=manager)
        store.is_locked("warm")  # the manager in use is made: it is not pickled
        copy = pickle.loads(pickle.dumps(store))
        assert type(copy.lock_manager) is type(manager)
        key = _key()
        assert copy.acquire_lock(key, "h", hold_timeout=5)
        assert store.is_locked(key)  # the same locks on both sides (one process here)
        copy.release_lock(key, "h")


# -- the store's lock methods ---------------------------------------------------------------


@pytest.fixture(params=["file", "memory", "filesystem"])
def store(request, tmp_path) -> ResultStore:
    manager = {"file": None, "memory": MemoryLockManager(),
               "filesystem": FileSystemLockManager(lock_files_directory=tmp_path / "locks")}
    return ResultStore(tmp_path / "results", lock_manager=manager[request.param])


def test_store_lock_methods_with_the_default_holder(store):
    key = _key()
    assert not store.is_locked(key)
    assert store.acquire_lock(key)
    assert store.is_locked(key) and store.is_lock_holder(key)
    assert store.acquire_lock(key)  # held already by this thread: renewed
    assert not _in_thread(lambda: store.is_lock_holder(key))  # another thread: another holder
    assert not _in_thread(lambda: store.acquire_lock(key, acquire_timeout=0.05))
    assert not store.wait_for_lock(key, timeout=0.05)
    # Prefect's managers raise ValueError when another holder releases...
    assert isinstance(_in_thread(lambda: _raises(lambda: store.release_lock(key))), ValueError)
    store.release_lock(key)
    assert not store.is_locked(key) and store.wait_for_lock(key, timeout=0)
    with pytest.raises(LockNotHeld) as info:  # ...ours a LockNotHeld that is one
        store.release_lock(key)
    assert isinstance(info.value, ValueError)


def _raises(fn):
    try:
        fn()
    except Exception as exc:
        return exc
    return None


def test_store_lock_methods_with_explicit_holders_and_timeouts(store):
    key = _key()
    assert store.acquire_lock(key, "alice", acquire_timeout=1, hold_timeout=0.2)
    assert store.is_lock_holder(key, "alice") and not store.is_lock_holder(key, "bob")
    assert not store.acquire_lock(key, "bob", 0.01)  # Prefect's positional order
    assert store.acquire_lock(key, "bob", timeout=2)  # Prefect's store's name; alice lapsed
    assert store.is_lock_holder(key, "bob")
    with pytest.raises(TypeError, match="acquire_timeout and timeout"):
        store.acquire_lock(key, "bob", acquire_timeout=1, timeout=1)
    with pytest.raises(ValueError):
        store.release_lock(key, "alice")
    store.release_lock(key, "bob")


def test_wait_for_lock_returns_once_another_thread_releases(store):
    key = _key()
    assert store.acquire_lock(key, "owner")
    releaser = threading.Timer(0.2, store.release_lock, args=(key, "owner"))
    releaser.start()
    started = time.monotonic()
    assert store.wait_for_lock(key, timeout=5)
    assert 0.1 < time.monotonic() - started < 4
    releaser.join()


def test_the_default_holder_is_one_per_thread_and_per_asyncio_task():
    holder = ResultStore.generate_default_holder()
    assert ResultStore.generate_default_holder() == holder  # stable within a thread
    assert _in_thread(ResultStore.generate_default_holder) != holder

    async def one() -> tuple[str, str]:
        first = ResultStore.generate_default_holder()
        await asyncio.sleep(0)
        return first, ResultStore.generate_default_holder()

    async def main():
        return await asyncio.gather(one(), one())

    (a1, a2), (b1, b2) = asyncio.run(main())
    assert a1 == a2 and b1 == b2 and a1 != b1  # stable within a task, one per task
    assert a1.startswith(holder.rsplit(":", 1)[0])  # host:pid:thread:name, then the task


def test_async_lock_methods_use_the_tasks_holder(tmp_path):
    store = ResultStore(tmp_path, lock_manager=MemoryLockManager())
    key = _key()

    async def take_and_check():
        assert await store.aacquire_lock(key, acquire_timeout=1, hold_timeout=5)
        assert store.is_lock_holder(key)
        return ResultStore.generate_default_holder()

    async def main():
        holder = await asyncio.create_task(take_and_check())
        assert not store.is_lock_holder(key)  # this task is another holder
        assert not await store.await_for_lock(key, timeout=0.05)
        return holder

    holder = asyncio.run(main())
    assert store.is_lock_holder(key, holder) and not store.wait_for_lock(key, timeout=0)
    store.release_lock(key, holder)


# -- LockManager's Prefect names ------------------------------------------------------


@pytest.fixture(params=["memory", "file", "filesystem", "storage"])
def manager(request, tmp_path) -> LockManager:
    if request.param == "memory":
        return MemoryLockManager()
    if request.param == "file":
        return FileLockManager(ResultStore(tmp_path).storage)
    if request.param == "filesystem":
        return FileSystemLockManager(lock_files_directory=tmp_path / "locks")
    return StorageLockManager(MemoryStorage(name=f"prefect-api-{uuid.uuid4().hex}"))


def test_prefect_names_on_every_manager(manager):
    key = _key()
    assert manager.acquire_lock(key, "a")
    assert manager.acquire_lock(key, "a", acquire_timeout=0)  # the holder again: True
    assert not manager.acquire_lock(key, "b", acquire_timeout=0.05)
    assert manager.is_locked(key) and manager.is_lock_holder(key, "a")
    with pytest.raises(ValueError, match="does not hold it"):
        manager.release_lock(key, "b")
    manager.release_lock(key, "a")
    with pytest.raises(ValueError):
        manager.release_lock(key, "a")
    assert manager.acquire_lock(key, "b", acquire_timeout=1, hold_timeout=0.2)  # hold = lease
    assert manager.acquire_lock(key, "c", acquire_timeout=3)  # b's lease ran out
    manager.release_lock(key, "c")


def test_async_prefect_names_on_every_manager(manager):
    key = _key()

    async def main():
        assert await manager.aacquire_lock(key, "a", hold_timeout=5)
        assert not await manager.aacquire_lock(key, "b", acquire_timeout=0.05)
        assert not await manager.await_for_lock(key, timeout=0.05)
        asyncio.get_running_loop().call_later(0.1, manager.release_lock, key, "a")
        assert await manager.await_for_lock(key, timeout=5)
        assert await manager.aacquire_lock(key, "b", acquire_timeout=1)
        manager.release_lock(key, "b")

    asyncio.run(main())


def test_memory_lock_managers_made_without_arguments_share_their_locks():
    assert MemoryLockManagerByModule is MemoryLockManager
    one, two = MemoryLockManager(), MemoryLockManager()
    key = _key()
    assert one.acquire_lock(key, "x", hold_timeout=5)
    assert two.is_locked(key) and two.is_lock_holder(key, "x")
    assert not two.acquire_lock(key, "y", acquire_timeout=0.01)
    two.release_lock(key, "x")  # any instance may release a holder's lock, as in Prefect
    assert not one.is_locked(key)


def test_filesystem_lock_manager(tmp_path):
    where = tmp_path / "deep" / "locks"
    one = FileSystemLockManager(lock_files_directory=where)
    two = FileSystemLockManager(str(where))
    assert isinstance(one, FileLockManager)
    assert one.lock_files_directory == where.resolve() and isinstance(one.lock_files_directory, Path)
    key = _key()
    assert one.acquire_lock(key, "x", hold_timeout=5)
    assert where.is_dir() and list(where.glob("*.lock"))
    assert two.is_locked(key) and not two.acquire_lock(key, "y", acquire_timeout=0.01)
    one.release_lock(key, "x")
    assert two.acquire_lock(key, "y") and not one.acquire_lock(key, "x", acquire_timeout=0.01)
    two.release_lock(key, "y")
    assert "locks" in repr(one)


# -- transactions use the store's lock manager --------------------------------------------


def test_a_serializable_transaction_uses_the_stores_lock_manager(tmp_path):
    manager = MemoryLockManager()
    store = ResultStore(tmp_path, lock_manager=manager)
    file_locks = FileLockManager(store.storage)
    key = _key()
    with transaction(key=key, store=store, isolation_level=IsolationLevel.SERIALIZABLE) as txn:
        assert txn.lock_manager is manager
        assert manager.is_locked(key) and store.is_locked(key)
        assert not file_locks.is_locked(key)  # not the storage's own manager
        txn.stage("v")
    assert not manager.is_locked(key)
    assert store.read(key) == "v"


def test_the_transactions_own_lock_manager_wins_over_the_stores(tmp_path):
    store = ResultStore(tmp_path, lock_manager=MemoryLockManager())
    key = _key()
    with transaction(key, store, isolation_level="SERIALIZABLE", lock_manager="file") as txn:
        assert type(txn.lock_manager) is FileLockManager
        assert not store.is_locked(key)  # the store's memory manager holds nothing
        assert FileLockManager(store.storage).is_locked(key)


def test_the_store_sees_the_lock_of_a_transaction_on_its_default_manager(tmp_path):
    store = ResultStore(tmp_path)
    key = _key()
    with transaction(key, store, isolation_level="SERIALIZABLE") as txn:
        assert store.is_locked(key) and not store.is_lock_holder(key)
        assert store.is_lock_holder(key, txn.holder)
        assert not store.acquire_lock(key, acquire_timeout=0.01)
    assert not store.is_locked(key)


def test_serializable_transactions_on_one_key_run_the_body_once_with_the_stores_manager(tmp_path):
    store = ResultStore(tmp_path, lock_manager=MemoryLockManager())
    key, runs = _key(), []

    def compute():
        with transaction(key, store, isolation_level="SERIALIZABLE") as txn:
            if txn.is_committed():
                return txn.read()
            runs.append(1)
            time.sleep(0.05)
            txn.stage(42)
            return 42

    threads = [threading.Thread(target=compute) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runs == [1] and store.read(key) == 42


# -- async transactions wait for locks in a thread ----------------------------------------


@pytest.mark.parametrize("lock_manager", [None, "memory"])
def test_an_async_serializable_transaction_waits_for_the_lock_without_blocking(tmp_path,
                                                                                lock_manager):
    store = ResultStore(tmp_path, lock_manager=lock_manager)
    key, runs, ticks = _key(), [], []

    async def main():
        entered, stop = asyncio.Event(), asyncio.Event()

        async def ticker():
            while not stop.is_set():
                await asyncio.sleep(0.01)
                ticks.append(time.monotonic())

        async def worker(first: bool):
            if not first:
                await entered.wait()
            async with atransaction(key, store, isolation_level="SERIALIZABLE") as txn:
                if first:
                    entered.set()
                if txn.is_committed():
                    return await txn.read()
                runs.append(first)
                await asyncio.sleep(0.3)  # holds the lock; the other waits meanwhile
                txn.stage("once")
                return "once"

        tick_task = asyncio.create_task(ticker())
        results = await asyncio.gather(worker(True), worker(False))
        stop.set()
        await tick_task
        return results

    results = _run_or_fail(main)
    assert results == ["once", "once"] and runs == [True]
    assert len(ticks) >= 10, len(ticks)  # ~30 ticks of 10 ms while the lock was held


def test_a_cancelled_async_transaction_leaves_no_lock_behind(tmp_path):
    store = ResultStore(tmp_path, lock_manager=MemoryLockManager())
    key = _key()

    async def main():
        held = asyncio.Event()

        async def holder():
            async with atransaction(key, store, isolation_level="SERIALIZABLE") as txn:
                held.set()
                await asyncio.sleep(0.3)
                txn.stage(1)

        first = asyncio.create_task(holder())
        await held.wait()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                async with atransaction(key, store, isolation_level="SERIALIZABLE",
                                        overwrite=True):
                    pass
        await first
        for _ in range(200):  # the abandoned waiter takes the lock, then gives it back
            if not store.is_locked(key):
                break
            await asyncio.sleep(0.01)
        assert not store.is_locked(key)

    _run_or_fail(main)


def test_a_store_with_a_lock_manager_refuses_writes_from_another_holder_and_readers_wait(tmp_path):
    import threading
    import time

    from stashflow.locking.memory import MemoryLockManager
    from stashflow.results import ResultStore

    store = ResultStore(result_storage=tmp_path, lock_manager=MemoryLockManager())
    assert store.acquire_lock("k", holder="writer")
    with pytest.raises(RuntimeError, match="another holder has its lock"):
        store.write("k", "from someone else", holder="other")
    with pytest.raises(RuntimeError, match="another holder has its lock"):
        store.write("k", "from the caller's default holder")

    seen = []
    reader = threading.Thread(target=lambda: seen.append(store.read("k", holder="reader")))
    reader.start()
    time.sleep(0.2)
    assert seen == []  # waiting for the writer, not failing on a missing record
    store.write("k", "written under the lock", holder="writer")
    store.release_lock("k", holder="writer")
    reader.join(5)
    assert seen == ["written under the lock"]
    store.write("k", "free again")  # nobody holds it: anyone may write
    assert store.read("k") == "free again"
