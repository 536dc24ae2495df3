"""async def tasks and flows: awaited calls run, persist and cache like sync ones; the
event loop, not threads, gives async tasks their concurrency."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from stashflow import flow, task
from stashflow.cache_policies import INPUTS
from stashflow.transactions import atransaction, get_transaction


def test_an_async_task_is_persisted_and_served_from_cache_across_flow_runs(files, storage_root):
    bodies = []

    @task(cache_policy=INPUTS, persist_result=True)
    async def double(x):
        bodies.append(x)
        await asyncio.sleep(0)
        return 2 * x

    @flow
    async def main(n):
        return [await double(i) for i in range(n)]

    assert asyncio.run(main(3)) == [0, 2, 4]
    assert asyncio.run(main(3)) == [0, 2, 4]
    assert bodies == [0, 1, 2]  # the second run read every value back
    assert len(files(storage_root)) == 3


def test_gathered_async_tasks_run_concurrently_on_one_thread():
    threads = set()

    @task
    async def nap(i):
        threads.add(threading.get_ident())
        await asyncio.sleep(0.3)
        return i

    @flow
    async def main():
        started = time.perf_counter()
        values = await asyncio.gather(*(nap(i) for i in range(8)))
        return values, time.perf_counter() - started

    values, elapsed = asyncio.run(main())
    assert values == list(range(8))
    assert elapsed < 8 * 0.3 / 2  # overlapped, not one after another
    assert len(threads) == 1  # on the loop's thread, not a pool


def test_calling_an_async_task_returns_a_coroutine_that_runs_only_when_awaited():
    bodies = []

    @task
    async def note(x):
        bodies.append(x)
        return x

    @flow
    async def main():
        pending = note(1)
        assert asyncio.iscoroutine(pending) and bodies == []
        return await pending

    assert asyncio.run(main()) == 1 and bodies == [1]


def test_sync_tasks_in_async_flows_and_submit_and_map_of_async_tasks_in_sync_flows():
    @task
    def inc(x):
        return x + 1

    @task
    async def twice(x):
        await asyncio.sleep(0)
        return 2 * x

    @flow
    async def async_flow():
        return inc(1), [f.result() for f in inc.map([1, 2])]

    @flow
    def sync_flow():
        return twice.submit(3).result(), [f.result() for f in twice.map([1, 2])]

    assert asyncio.run(async_flow()) == (2, [2, 3])
    assert sync_flow() == (6, [2, 4])


def test_an_async_subflow_is_a_coroutine_in_a_sync_flow_and_a_failing_async_task_raises():
    @task(retries=1)
    async def fails():
        raise ValueError("no")

    @flow
    async def inner():
        return 5

    @flow
    def outer():
        pending = inner()  # like any async def: a coroutine, run as the caller chooses
        assert asyncio.iscoroutine(pending)
        return asyncio.run(pending)

    @flow
    async def failing():
        return await fails()

    assert outer() == 5
    with pytest.raises(ValueError, match="no"):
        asyncio.run(failing())


def test_async_task_hooks_and_an_async_transaction_commit_with_awaited_hooks():
    seen = []

    @task
    async def stage(x):
        get_transaction().set("x", x)
        return x

    @stage.on_commit
    async def committed(txn):
        await asyncio.sleep(0)
        seen.append(("commit", txn.get("x")))

    @flow
    async def main():
        async with atransaction(key="async-commit") as txn:
            await stage(7)
        return txn.is_committed()

    assert asyncio.run(main()) is True
    assert seen == [("commit", 7)]


def test_a_state_is_awaited_with_aresult_in_async_code():
    @task(persist_result=True, cache_result_in_memory=False)
    async def one():
        return 1

    @flow
    async def main():
        state = await one(return_state=True)
        return await state.aresult(), state.result()

    assert asyncio.run(main()) == (1, 1)
