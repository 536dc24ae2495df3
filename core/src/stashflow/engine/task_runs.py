"""One run of a task: the key, the cache, the body with its retries, the record, the hooks.

`run_task` runs a call of a sync task and `arun_task` one of an async task (awaiting
the body, and doing storage and lock work in a thread so the event loop runs on).
Both follow the same path:

1. resolve the options (TaskConfig), name the run, compute the key (template,
   `cache_key_fn` or cache policy; the `self` of a method is not an input);
2. inside a transaction, or when the task has commit/rollback hooks or its cache
   policy asks for an isolation level or a lock, the run is a transaction of its
   own (nested in any open one): found committed -> its value; else the body runs
   and its value is staged, written when the outermost transaction commits;
3. otherwise: a record at the key is a hit ("Cached"); else the body runs, with
   retries, and the value is written.

A value the serializer refuses, or a storage that fails on write, does not fail
the run (as in Prefect): it is logged, and the value is returned, not persisted.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
import warnings
from typing import Any

from ..exceptions import RECORD_UNUSABLE, ResultNotFound, SerializationError, StorageError
from ..keys import validate_key
from ..serializers import revive
from .context import FlowRun, TaskRun, TaskRunContext, task_run_var
from .futures import CACHED, COMPLETED, FAILED, RETRYING, State, resolve_futures
from .persistence import TaskConfig
from .reporting import printing_to_log, prints_to_log, task_run_finished, task_run_retrying
from .retries import jittered
from .timeouts import deadline

_LOG = logging.getLogger("stashflow.task_runs")


class CacheWarning(UserWarning):
    """A cached record could not be used (corrupted or undecodable); the task runs again."""


class _BodyFailed(Exception):
    """Carries a task body's exception out of a transaction (which then rolls back)."""


def in_transaction() -> bool:
    # No transaction can be open before stashflow.transactions is (fully) imported, and
    # importing it with the engine costs every process ~2.5 ms (locking and its modules,
    # measured 2026-12-04) that most never use: look it up instead.
    get_transaction = getattr(sys.modules.get("stashflow.transactions"), "get_transaction", None)
    return get_transaction is not None and get_transaction() is not None


def resolve_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """Futures among the arguments replaced by their values (waiting for them)."""
    for name, value in parameters.items():
        resolved = resolve_futures(value)
        if resolved is not value:
            parameters[name] = resolved
    return parameters


class _Plan:
    """What a run will do, decided before the body runs."""

    __slots__ = ("cacheable", "config", "context", "key", "transactional")

    def __init__(self, config: TaskConfig, context: TaskRunContext, key: str | None,
                 cacheable: bool, transactional: bool):
        self.config, self.context, self.key = config, context, key
        self.cacheable, self.transactional = cacheable, transactional


def _plan(task: Any, parameters: dict[str, Any], task_run: TaskRun, flow_run: FlowRun | None,
          config: TaskConfig) -> _Plan:
    context = TaskRunContext(task, task_run, flow_run, parameters)
    task_run.set_name(task.run_name(parameters))
    key, cacheable = None, False
    if config.persist:
        task_run.store = config.store
        if config.template is not None:
            key = config.template.format(parameters, flow_run, task_run)
        else:
            key = config.policy.compute_key(context, parameters,
                                            None if flow_run is None else flow_run.parameters)
            if key is not None:
                validate_key(key)
        cacheable = key is not None
        if not cacheable:  # persisted under a fresh name, never looked up
            key = uuid.uuid4().hex
    options = task.options
    transactional = (in_transaction() or bool(options.on_commit or options.on_rollback)
                     or (cacheable and (config.isolation_level is not None
                                        or config.lock_manager is not None)))
    return _Plan(config, context, key, cacheable, transactional)


def _should_retry(task: Any, plan: _Plan, exc: Exception, attempt: int) -> bool:
    if attempt >= plan.config.retries:
        return False
    condition = task.options.retry_condition_fn
    if condition is None:
        return True
    from ..transactions import run_maybe_async  # lazy: ~2.5 ms of import most runs never need

    state = State(FAILED, exception=exc, run=plan.context.task_run)
    try:
        return bool(run_maybe_async(condition(task, plan.context.task_run, state)))
    except Exception:
        _LOG.exception("retry_condition_fn of task %r failed; not retrying", task.name)
        return False


def _next_attempt(plan: _Plan, attempt: int, exc: Exception) -> float:
    """Mark the run as retrying (and say so); the seconds to wait first."""
    task_run = plan.context.task_run
    task_run.run_count = attempt + 2
    task_run.state = RETRYING
    delay = jittered(plan.config.delays[attempt], plan.config.jitter)
    task_run_retrying(task_run, exc, delay, plan.config.retries)
    return delay


def _execute(task: Any, plan: _Plan) -> Any:
    token = task_run_var.set(plan.context)
    context = plan.context
    printing = prints_to_log(task, context.task_run.name, context.flow_run)
    try:
        attempt = 0
        timeout = task.options.timeout_seconds
        while True:
            try:
                with deadline(timeout, f"task {task.name!r}"):
                    return task.call_body(plan.context.parameters)
            except Exception as exc:
                if not _should_retry(task, plan, exc, attempt):
                    raise
                delay = _next_attempt(plan, attempt, exc)
                attempt += 1
                if delay:
                    time.sleep(delay)
    finally:
        task_run_var.reset(token)
        if printing is not None:
            printing_to_log.reset(printing)


async def _aexecute(task: Any, plan: _Plan) -> Any:
    token = task_run_var.set(plan.context)
    context = plan.context
    printing = prints_to_log(task, context.task_run.name, context.flow_run)
    timeout = task.options.timeout_seconds
    try:
        attempt = 0
        while True:
            try:
                body = task.call_body(plan.context.parameters)
                return await (asyncio.wait_for(body, timeout) if timeout else body)
            except Exception as exc:
                if not _should_retry(task, plan, exc, attempt):
                    raise
                delay = _next_attempt(plan, attempt, exc)
                attempt += 1
                if delay:
                    await asyncio.sleep(delay)
    finally:
        task_run_var.reset(token)
        if printing is not None:
            printing_to_log.reset(printing)


def _read_cached(task: Any, store: Any, key: str) -> tuple[Any] | None:
    """(value,) from the record at `key`, read once; None for a miss.

    A value read back by a serializer that writes dataclasses and pydantic models as
    their fields (json, msgpack) becomes the model the task's return annotation names.
    """
    try:
        record = store.read_record(key)
        annotation = task.return_annotation
        if annotation is None or "pickle" in record.metadata.serializer:
            return (record.value,)
        return (revive(record.value, annotation),)
    except ResultNotFound:  # absent, or expired
        return None
    except RECORD_UNUSABLE as exc:
        warnings.warn(f"task {task.name!r}: cached record {key!r} is unusable, running the "
                      f"task again and overwriting it: {exc}", CacheWarning, stacklevel=4)
        return None


def _write(task: Any, plan: _Plan, value: Any) -> bool:
    """Store the value; False (logged) when it cannot be: the run still completes."""
    try:
        plan.config.store.write(plan.key, value, expiration=plan.config.expiration)
        return True
    except (SerializationError, StorageError) as exc:
        _LOG.warning("task %r completed but its result was not persisted: %s", task.name, exc)
        return False


def finished(name: str, plan: _Plan, value: Any, durable: bool) -> State:
    task_run, config = plan.context.task_run, plan.config
    task_run.state = name
    if not config.persist:
        return State(name, value, run=task_run)
    task_run.key = plan.key if durable else None
    if config.in_memory or not durable:
        return State(name, value, store=config.store if durable else None,
                     key=plan.key if durable else None, run=task_run)
    return State(name, store=config.store, key=plan.key, run=task_run)


def failed(task_run: TaskRun, exc: BaseException) -> State:
    task_run.state = FAILED
    return State(FAILED, exception=exc, run=task_run)


def _hooks_after(task: Any, task_run: TaskRun, state: State) -> None:
    hooks = task.options.on_failure if state.name == FAILED else task.options.on_completion
    if not hooks:
        return
    from ..transactions import run_maybe_async  # lazy: ~2.5 ms of import most runs never need

    for hook in hooks:
        try:
            run_maybe_async(hook(task, task_run, state))
        except Exception:
            _LOG.exception("hook %r of task %r failed", hook, task.name)


# -- sync -----------------------------------------------------------------------------------


def run_task(task: Any, parameters: dict[str, Any], task_run: TaskRun, flow_run: FlowRun | None,
             config: TaskConfig | None = None) -> tuple[State, Any]:
    parameters = resolve_parameters(parameters)  # waits for upstream futures
    started = time.perf_counter()
    try:
        state, value = _run(task, parameters, task_run, flow_run,
                            config if config is not None else task.config_for(flow_run))
    finally:
        task_run.duration = time.perf_counter() - started
    _hooks_after(task, task_run, state)
    task_run_finished(task_run, state)
    return state, value


def _run(task: Any, parameters: dict[str, Any], task_run: TaskRun, flow_run: FlowRun | None,
         config: TaskConfig) -> tuple[State, Any]:
    plan = _plan(task, parameters, task_run, flow_run, config)
    if plan.transactional:
        return _run_transaction(task, plan)
    if plan.cacheable and config.lookup and not config.refresh:
        hit = _read_cached(task, config.store, plan.key)
        if hit is not None:
            return finished(CACHED, plan, hit[0], durable=True), hit[0]
    try:
        value = _execute(task, plan)
    except Exception as exc:
        return failed(task_run, exc), None
    durable = _write(task, plan, value) if config.persist else False
    return finished(COMPLETED, plan, value, durable), value


def _transaction_options(task: Any, plan: _Plan) -> dict[str, Any]:
    config = plan.config
    return {"key": plan.key if config.persist else None, "store": config.store,
            "isolation_level": config.isolation_level, "lock_manager": config.lock_manager,
            "overwrite": config.refresh or not config.lookup, "expiration": config.expiration,
            "write_on_commit": config.persist}


def _stage_hooks(task: Any) -> dict[str, Any]:
    return {"on_commit": task.options.on_commit, "on_rollback": task.options.on_rollback}


def _run_transaction(task: Any, plan: _Plan) -> tuple[State, Any]:
    """The run as a transaction: under the key's lock (SERIALIZABLE), nested in any open
    transaction, written when the outermost transaction commits."""
    from ..transactions import transaction  # lazy: ~2.5 ms of import most runs never need

    cached = False
    try:
        with transaction(**_transaction_options(task, plan)) as txn:
            if txn.key is not None and txn.is_committed():  # a header, or a value staged here
                try:
                    value, cached = txn.read(), True
                except (ResultNotFound, *RECORD_UNUSABLE) as exc:
                    warnings.warn(f"task {task.name!r}: cached record {plan.key!r} is unusable, "
                                  f"running the task again: {exc}", CacheWarning, stacklevel=4)
            if not cached:
                try:
                    value = _execute(task, plan)
                except Exception as exc:
                    raise _BodyFailed() from exc
                txn.stage(value, **_stage_hooks(task))
    except _BodyFailed as body:
        return failed(plan.context.task_run, body.__cause__), None
    return _after_transaction(plan, txn, value, cached)


def _after_transaction(plan: _Plan, txn: Any, value: Any, cached: bool) -> tuple[State, Any]:
    # A nested transaction writes when its outermost parent commits: until then the value
    # is only in memory, so the state keeps it whatever cache_result_in_memory says.
    durable = plan.config.persist and (cached or txn.state == "COMMITTED")
    return finished(CACHED if cached else COMPLETED, plan, value, durable), value


# -- async ----------------------------------------------------------------------------------


async def arun_task(task: Any, parameters: dict[str, Any], task_run: TaskRun,
                    flow_run: FlowRun | None, config: TaskConfig | None = None
                    ) -> tuple[State, Any]:
    parameters = await asyncio.to_thread(resolve_parameters, parameters)
    started = time.perf_counter()
    try:
        if config is None:
            config = await asyncio.to_thread(task.config_for, flow_run)
        state, value = await _arun(task, parameters, task_run, flow_run, config)
    finally:
        task_run.duration = time.perf_counter() - started
    await asyncio.to_thread(_hooks_after, task, task_run, state)
    task_run_finished(task_run, state)
    return state, value


async def _arun(task: Any, parameters: dict[str, Any], task_run: TaskRun,
                flow_run: FlowRun | None, config: TaskConfig) -> tuple[State, Any]:
    plan = _plan(task, parameters, task_run, flow_run, config)
    if plan.transactional:
        return await _arun_transaction(task, plan)
    if plan.cacheable and config.lookup and not config.refresh:
        hit = await asyncio.to_thread(_read_cached, task, config.store, plan.key)
        if hit is not None:
            return finished(CACHED, plan, hit[0], durable=True), hit[0]
    try:
        value = await _aexecute(task, plan)
    except Exception as exc:
        return failed(task_run, exc), None
    durable = await asyncio.to_thread(_write, task, plan, value) if config.persist else False
    return finished(COMPLETED, plan, value, durable), value


async def _arun_transaction(task: Any, plan: _Plan) -> tuple[State, Any]:
    from ..transactions import atransaction  # lazy: ~2.5 ms of import most runs never need

    cached = False
    try:
        async with atransaction(**_transaction_options(task, plan)) as txn:
            if txn.key is not None and txn.is_committed():
                try:
                    value, cached = await txn.read(), True
                except (ResultNotFound, *RECORD_UNUSABLE) as exc:
                    warnings.warn(f"task {task.name!r}: cached record {plan.key!r} is unusable, "
                                  f"running the task again: {exc}", CacheWarning, stacklevel=4)
            if not cached:
                try:
                    value = await _aexecute(task, plan)
                except Exception as exc:
                    raise _BodyFailed() from exc
                txn.stage(value, **_stage_hooks(task))
    except _BodyFailed as body:
        return failed(plan.context.task_run, body.__cause__), None
    return _after_transaction(plan, txn, value, cached)


__all__ = ["CacheWarning", "arun_task", "in_transaction", "resolve_parameters", "run_task"]
