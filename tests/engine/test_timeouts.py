"""timeout_seconds on sync and async tasks and flows: the run fails with TimeoutError
when its body runs longer, on the main thread and on a task runner's worker threads."""

from __future__ import annotations

import asyncio
import time

import pytest
from stashflow import flow, task
from stashflow.engine import ThreadPoolTaskRunner


def test_a_sync_task_that_runs_over_fails_with_timeout_error_and_stops_early():
    @task(timeout_seconds=0.2)
    def slow():
        time.sleep(3)
        return 1

    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"task 'slow' exceeded timeout_seconds=0.2"):
        slow()
    assert time.monotonic() - started < 1.5


def test_a_sync_flow_that_runs_over_fails_and_its_later_code_never_runs():
    reached = []

    @flow(timeout_seconds=0.2)
    def slow_flow():
        time.sleep(2)
        reached.append("after the sleep")

    state = slow_flow(return_state=True)
    assert state.is_failed() and isinstance(state.exception, TimeoutError)
    assert reached == []


def test_a_task_within_time_is_untouched_and_an_outer_deadline_still_holds():
    @task(timeout_seconds=5)
    def quick():
        return "done"

    @task(timeout_seconds=5)
    def long_inner():
        time.sleep(3)

    @flow(timeout_seconds=0.3)
    def outer():
        assert quick() == "done"
        long_inner()  # its own deadline is later: the flow's comes first

    started = time.monotonic()
    with pytest.raises(TimeoutError, match="flow 'outer'"):
        outer()
    assert time.monotonic() - started < 2


def test_a_timed_out_task_on_a_worker_thread_fails_and_retries():
    attempts = []

    @task(timeout_seconds=0.2, retries=1)
    def spin():
        attempts.append(1)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # busy in Python: interrupted at once
            pass

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def f():
        return spin.submit().final_state()

    started = time.monotonic()
    state = f()
    assert state.is_failed() and isinstance(state.exception, TimeoutError)
    assert len(attempts) == 2 and time.monotonic() - started < 2


def test_an_async_task_that_runs_over_fails_with_timeout_error():
    @task(timeout_seconds=0.1)
    async def slow():
        await asyncio.sleep(2)

    @flow
    async def f():
        await slow()

    with pytest.raises(TimeoutError):
        asyncio.run(f())
