"""Retries as Prefect users write them: counts, delays (number, list, callable,
exponential_backoff), jitter, a condition, default settings, flow retries; a run that
succeeds on a retry persists once, and a cached result is never retried."""

from __future__ import annotations

import random

import pytest
from stashflow import flow, task
from stashflow.cache_policies import INPUTS
from stashflow.engine import retries as retry_module
from stashflow.tasks import exponential_backoff


@pytest.fixture
def slept(monkeypatch):
    """The delays the engine waited, without waiting them."""
    waited: list[float] = []
    monkeypatch.setattr("stashflow.engine.task_runs.time.sleep", waited.append)
    monkeypatch.setattr("stashflow.engine.flows.time.sleep", waited.append)
    return waited


def flaky(failures: int, attempts: list):
    def body():
        attempts.append(len(attempts))
        if len(attempts) <= failures:
            raise RuntimeError(f"attempt {len(attempts)}")
        return "ok"
    return body


@pytest.mark.parametrize(("delay", "expected"), [
    (3, [3.0, 3.0, 3.0]),
    ([1, 2], [1.0, 2.0, 2.0]),
    (exponential_backoff(backoff_factor=10), [10.0, 20.0, 40.0]),
    (lambda retries: [retries] * retries, [3.0, 3.0, 3.0]),
])
def test_each_form_of_retry_delay_seconds_waits_what_it_says(slept, delay, expected):
    attempts = []
    t = task(retries=3, retry_delay_seconds=delay)(flaky(3, attempts))
    assert t() == "ok"
    assert len(attempts) == 4 and slept == expected


def test_retries_run_out_and_the_last_error_is_raised(slept):
    attempts = []
    t = task(retries=2)(flaky(5, attempts))
    with pytest.raises(RuntimeError, match="attempt 3"):
        t()
    assert len(attempts) == 3 and slept == []  # no delay given: none waited


@pytest.mark.parametrize(("factor", "lowest"), [(0.5, 6.2), (1, 4.1), (3, 0.9)])
def test_jitter_stays_under_the_factor_never_fires_at_once_and_averages_the_delay(factor, lowest):
    rng = random.Random(7)
    spread = [retry_module.jittered(10.0, factor, rng) for _ in range(20000)]
    assert lowest <= min(spread) and max(spread) <= 10.0 * (1 + factor)
    assert 9.6 < sum(spread) / len(spread) < 10.4
    assert retry_module.jittered(10.0, None) == 10.0 and retry_module.jittered(0.0, 2.0) == 0.0


def test_a_task_with_jitter_waits_a_jittered_delay(slept):
    t = task(retries=1, retry_delay_seconds=100, retry_jitter_factor=0.2)(flaky(1, []))
    t()
    assert len(slept) == 1 and 60 <= slept[0] <= 120


def test_retry_condition_fn_sees_the_task_the_run_and_the_failed_state(slept):
    calls = []

    def only_timeouts(task_, task_run, state):
        calls.append((task_.name, task_run.name, type(state.exception).__name__))
        return isinstance(state.exception, TimeoutError)

    attempts = []

    @task(retries=5, retry_condition_fn=only_timeouts)
    def body():
        attempts.append(1)
        raise (TimeoutError if len(attempts) < 3 else KeyError)("x")

    with pytest.raises(KeyError):
        body()
    assert len(attempts) == 3
    assert [c[2] for c in calls] == ["TimeoutError", "TimeoutError", "KeyError"]
    assert calls[0][0] == "body"


def test_default_retry_settings_apply_to_tasks_and_flows_that_set_none(monkeypatch, slept):
    monkeypatch.setenv("STASHFLOW_TASKS_DEFAULT_RETRIES", "2")
    monkeypatch.setenv("STASHFLOW_TASKS_DEFAULT_RETRY_DELAY_SECONDS", "1,5")
    monkeypatch.setenv("STASHFLOW_FLOWS_DEFAULT_RETRIES", "1")
    attempts, explicit = [], []
    assert task(flaky(2, attempts))() == "ok"
    assert slept == [1.0, 5.0]
    assert task(flaky(1, explicit)).retries == 2
    with pytest.raises(RuntimeError):
        task(retries=0)(flaky(1, explicit))()  # an explicit 0 wins over the setting

    flow_attempts = []

    @flow
    def f():
        flow_attempts.append(1)
        if len(flow_attempts) == 1:
            raise RuntimeError("first flow run attempt")
        return "flow ok"

    assert f() == "flow ok" and len(flow_attempts) == 2


def test_flow_retries_rerun_the_flow_and_its_completed_tasks_are_not_redone(slept, files,
                                                                           storage_root):
    bodies, attempts = [], []

    @task(cache_policy=INPUTS, persist_result=True)
    def load(x):
        bodies.append(x)
        return x

    @flow(retries=2, retry_delay_seconds=4)
    def f():
        value = load(1)
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("flaky flow")
        return value

    assert f() == 1
    assert len(attempts) == 3 and bodies == [1]  # the task's record served the retries
    assert slept == [4.0, 4.0]


def test_a_retried_run_that_succeeds_persists_once_and_a_cached_result_is_never_retried(
        slept, files, storage_root):
    attempts = []
    t = task(retries=3, retry_delay_seconds=1, cache_policy=INPUTS,
             persist_result=True)(flaky(2, attempts))
    assert t() == "ok"
    assert len(attempts) == 3 and len(files(storage_root)) == 1
    assert t() == "ok"
    assert len(attempts) == 3 and len(slept) == 2  # the hit ran nothing and waited nothing


@pytest.mark.parametrize("bad", [-1, "soon", [1, "x"], []])
def test_bad_delays_are_refused_when_the_task_is_defined(bad):
    with pytest.raises(ValueError, match="retry_delay_seconds"):
        task(retries=1, retry_delay_seconds=bad)(lambda: 1)


def test_bad_jitter_and_backoff_are_refused():
    with pytest.raises(ValueError, match="retry_jitter_factor"):
        task(retry_jitter_factor=-1)(lambda: 1)
    with pytest.raises(ValueError, match="backoff_factor"):
        exponential_backoff(backoff_factor=-2)
