"""ResultStore's async methods: the sync ones in a worker thread, so the event loop runs on."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import timedelta

import pytest
from stashflow import ResultStore
from stashflow.exceptions import (
    InvalidResultKey,
    ResultNotFound,
    ResultSignatureError,
    UntrustedSerializer,
)
from stashflow.locking import MemoryLockManager
from stashflow.results import ResultExpired
from stashflow.storage.memory import MemoryStorage

TICK = 0.01


class SlowMemoryStorage(MemoryStorage):
    """A memory backend whose reads take `delay` seconds (a far-away object store)."""

    delay: float = 0.3

    def read(self, key: str) -> bytes:
        time.sleep(self.delay)
        return super().read(key)


def _memory_store(**options) -> ResultStore:
    return ResultStore(f"memory://async-{uuid.uuid4().hex}", **options)


async def _ticking(while_running):
    """Run `while_running` (a coroutine) next to a ticker; (its result, ticks counted)."""
    ticks = 0
    stop = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while not stop.is_set():
            await asyncio.sleep(TICK)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # let the ticker start
    try:
        result = await while_running
    finally:
        stop.set()
        await task
    return result, ticks


def test_aread_of_a_slow_backend_lets_the_loop_run():
    store = ResultStore(SlowMemoryStorage(name=f"slow-{uuid.uuid4().hex}", delay=0.3))
    store.write("big", {"rows": 3})

    async def main():
        value, ticks = await _ticking(store.aread("big"))
        assert value == {"rows": 3}
        assert ticks >= 10, ticks  # 0.3 s of reading: ~30 ticks of 10 ms

        async def blocking():  # the sync read in the loop: the ticker stands still
            return store.read("big")

        value, ticks = await _ticking(blocking())
        assert value == {"rows": 3} and ticks <= 1, ticks

    asyncio.run(main())


def test_aread_record_and_aexists_of_a_slow_backend_let_the_loop_run():
    store = ResultStore(SlowMemoryStorage(name=f"slow-{uuid.uuid4().hex}", delay=0.2))
    store.write("k", [1, 2])

    async def main():
        record, ticks = await _ticking(store.aread_record("k"))
        assert record.value == [1, 2] and record.metadata.serializer == "pickle"
        assert ticks >= 5, ticks

    asyncio.run(main())


@pytest.mark.parametrize("where", ["memory", "local"])
def test_concurrent_awrites_all_land(where, tmp_path):
    store = _memory_store() if where == "memory" else ResultStore(tmp_path)
    n = 40

    async def main():
        metas = await asyncio.gather(*(store.awrite(f"item-{i}", {"i": i}) for i in range(n)))
        assert all(m.serializer == "pickle" for m in metas)
        values = await asyncio.gather(*(store.aread(f"item-{i}") for i in range(n)))
        assert values == [{"i": i} for i in range(n)]

    asyncio.run(main())
    assert sorted(store.list("item-")) == sorted(f"item-{i}" for i in range(n))


def test_concurrent_awrites_of_one_key_leave_one_whole_record(tmp_path):
    store = ResultStore(tmp_path)
    payloads = [bytes([i]) * 200_000 for i in range(16)]  # big enough to be streamed

    async def main():
        await asyncio.gather(*(store.awrite("same", p) for p in payloads))
        return await store.aread("same")

    assert asyncio.run(main()) in payloads  # one writer's record, whole


def test_awrite_expiration_aexists_and_adelete():
    store = _memory_store()

    async def main():
        await store.awrite("soon", 1, expiration=timedelta(hours=1))
        record = await store.aread_record("soon")
        assert record.metadata.expiration is not None
        await store.awrite("gone", 2, -1)  # positional expiration, as write takes it
        assert await store.aexists("gone")  # expired records exist...
        with pytest.raises(ResultExpired):  # ...but do not read
            await store.aread("gone")
        await store.adelete("gone")
        assert not await store.aexists("gone")
        await store.adelete("gone")  # nothing there: nothing happens, as delete

    asyncio.run(main())


def _signed(key: str) -> ResultStore:
    return ResultStore("memory://async-signed", signing_key=key)


@pytest.mark.parametrize("case, error", [
    ("missing", ResultNotFound),
    ("invalid key", InvalidResultKey),
    ("wrong signature", ResultSignatureError),
    ("untrusted serializer", UntrustedSerializer),
])
def test_aread_raises_what_read_raises(case, error):
    writer = _signed("one")
    writer.write("signed", 42)
    reader, key = {
        "missing": (writer, "nothing-here"),
        "invalid key": (writer, "../outside"),
        "wrong signature": (_signed("two"), "signed"),
        "untrusted serializer": (ResultStore("memory://async-signed", signing_key="one",
                                             trusted_serializers=["json"]), "signed"),
    }[case]
    with pytest.raises(error) as sync_error:
        reader.read(key)

    async def main():
        with pytest.raises(error) as async_error:
            await reader.aread(key)
        with pytest.raises(error):
            await reader.aread_record(key)
        return async_error

    async_error = asyncio.run(main())
    assert type(async_error.value) is type(sync_error.value)
    assert str(async_error.value) == str(sync_error.value)


def test_the_async_methods_check_their_arguments_as_the_sync_ones_do():
    store = _memory_store()
    for name, args in [("read", ()), ("write", ("k",)), ("exists", ()), ("delete", ()),
                       ("read_record", ())]:
        with pytest.raises(TypeError):
            getattr(store, name)(*args)
        with pytest.raises(TypeError):  # at the call, before anything is awaited
            getattr(store, "a" + name)(*args)

    async def main():
        for method in (store.aexists, store.adelete, store.aread):
            with pytest.raises(InvalidResultKey):
                await method("/etc/passwd")
        with pytest.raises(InvalidResultKey):
            await store.awrite("../up", 1)

    asyncio.run(main())


def test_await_for_lock_lets_the_loop_run_while_another_thread_holds_the_lock():
    store = _memory_store(lock_manager=MemoryLockManager())
    key = f"held-{uuid.uuid4().hex}"
    taken, done = threading.Event(), threading.Event()

    def hold():
        assert store.acquire_lock(key)  # this thread's default holder
        taken.set()
        time.sleep(0.3)
        store.release_lock(key)
        done.set()

    worker = threading.Thread(target=hold)
    worker.start()
    taken.wait()

    async def main():
        assert not store.is_lock_holder(key)  # another thread's lock
        free, ticks = await _ticking(store.await_for_lock(key))
        assert free and done.is_set() and ticks >= 10, ticks
        got, ticks = await _ticking(store.aacquire_lock(key, acquire_timeout=1))
        assert got and store.is_lock_holder(key)  # this task's default holder
        store.release_lock(key)

    asyncio.run(main())
    worker.join()


def test_a_cancelled_aacquire_lock_does_not_keep_the_lock():
    store = _memory_store()
    key = f"contended-{uuid.uuid4().hex}"
    assert store.acquire_lock(key, "first", hold_timeout=30)

    async def main():
        waiter = asyncio.create_task(store.aacquire_lock(key, "second", hold_timeout=30))
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        store.release_lock(key, "first")  # the abandoned thread now takes it, then gives it back
        for _ in range(100):
            await asyncio.sleep(0.01)
            if not store.is_locked(key):
                break
        assert not store.is_locked(key)
        assert not store.is_lock_holder(key, "second")

    asyncio.run(main())
