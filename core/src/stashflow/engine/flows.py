"""Flows: the `@flow` decorator, and running one call of a flow.

A flow run resolves its persistence once (tasks inside inherit it), runs the
function with the run visible to tasks and subflows (retrying it as `retries`
says, in the same run: persisted task results of an earlier attempt are hits),
waits for the tasks it submitted, and - when it persists - writes its return
value under the run's id (a uuid4 hex). An `async def` flow's call returns a
coroutine to await.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from .. import settings
from ..exceptions import SerializationError, StorageError
from ..results import default_store
from .binding import BindsAsMethod, check_function, is_async, make_binder, rebind, unwrap_method
from .context import FlowRun, flow_run_var
from .futures import COMPLETED, FAILED, RETRYING, State, resolve_futures
from .options import FlowOptions, decorator_signature, rebuild
from .options import make as make_options
from .options import names as option_names
from .options import replace as replace_options
from .persistence import FlowConfig, resolve_flow_config, settings_stamp
from .reporting import console_for_flows, flow_run_finished, printing_to_log, prints_to_log
from .retries import delays_for
from .timeouts import deadline

P = ParamSpec("P")  # the function's parameters: Flow[[int], str] in annotations
R = TypeVar("R")  # what it returns

_LOG = logging.getLogger("stashflow.flow_runs")
# Options read as resolved values, not copied to attributes.
_RESOLVED = frozenset({"retries", "retry_delay_seconds", "name"})


class Flow(BindsAsMethod, Generic[P, R]):
    """A function whose calls are flow runs; tasks called inside belong to the run.

    `Flow(fn, **options)` takes the options of `@flow` (engine.options.FlowOptions);
    each is also readable as an attribute.
    """

    def __init__(self, fn: Callable, options: FlowOptions | None = None, **given: Any):
        fn, self._method_kind = unwrap_method(fn)
        check_function(fn, "flow")
        if options is None:
            options = make_options(FlowOptions, given)
        elif given:
            options = replace_options(options, given)
        self.fn = fn
        self.options = options
        functools.update_wrapper(self, fn)
        for field in option_names(FlowOptions):
            if field not in _RESOLVED:
                setattr(self, field, getattr(options, field))
        self.name = options.name or getattr(fn, "__name__", type(fn).__name__)
        self.is_async = is_async(fn)
        self._bind, self._call, _names = make_binder(fn, self.name)
        self._configs: dict[Any, FlowConfig] = {}

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r})"

    def __reduce__(self) -> tuple:
        if self._bound is not None:
            return rebind, (rebuild(Flow, self.fn, self.options), self._bound)
        return rebuild, (Flow, self.fn, self.options)

    def with_options(self, **options: Any) -> Flow:
        """A new flow with some options changed (the same names as `@flow`)."""
        try:
            new = Flow(self.fn, replace_options(self.options, options))
        except TypeError as exc:
            raise TypeError(f"with_options(): {exc}") from None
        new._method_kind, new._bound = self._method_kind, self._bound
        return new

    def _config(self, parent: FlowRun | None) -> tuple[FlowConfig, tuple]:
        stamp = parent.stamp if parent is not None else settings_stamp()
        marker = (stamp, None if parent is None else parent.config)
        config = self._configs.get(marker)
        if config is None:
            if len(self._configs) > 32:
                self._configs.clear()
            config = self._configs[marker] = resolve_flow_config(
                self, None if parent is None else parent.config, stamp)
        return config, stamp

    @property
    def retries(self) -> int:
        given = self.options.retries
        return given if given is not None else settings.get("STASHFLOW_FLOWS_DEFAULT_RETRIES")

    @property
    def retry_delay_seconds(self) -> float | list[float]:
        given = self.options.retry_delay_seconds
        return given if given is not None else settings.get(
            "STASHFLOW_FLOWS_DEFAULT_RETRY_DELAY_SECONDS")

    if TYPE_CHECKING:  # what a type checker sees: the function's own parameters and result
        @overload
        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

        @overload
        def __call__(self, *args: Any, return_state: bool, **kwargs: Any) -> Any: ...

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        """Run the flow and return its value (its State with return_state=True).

        An async flow's call returns a coroutine: `await my_flow()`.
        """
        parameters = self._bind(self._with_bound(args), kwargs)
        if self.is_async:
            return self._acall(parameters, return_state)
        return _outcome(*self._run(parameters), return_state)

    async def _acall(self, parameters: dict[str, Any], return_state: bool) -> Any:
        return _outcome(*await self._arun(parameters), return_state)

    def _start(self, parameters: dict[str, Any]) -> FlowRun:
        parent = flow_run_var.get()
        if parent is None:
            console_for_flows()
        config, stamp = self._config(parent)
        parameters = {k: resolve_futures(v) for k, v in parameters.items()}
        run = FlowRun(self, parameters, config, stamp, parent)
        run.set_name(self._run_name(parameters))
        if parent is not None:
            parent.task_runs.append(run)
        return run

    def _run_name(self, parameters: dict[str, Any]) -> str | None:
        spec = self.options.flow_run_name
        if spec is None:
            return None
        return str(spec()) if callable(spec) else spec.format(**parameters)

    def _delays(self) -> tuple[float, ...]:
        return delays_for(self.retry_delay_seconds, self.retries)

    def _run(self, parameters: dict[str, Any]) -> tuple[State, Any]:
        run = self._start(parameters)
        delays = self._delays()
        attempt = 0
        while True:
            try:
                with _running(run), deadline(self.options.timeout_seconds, f"flow {self.name!r}"):
                    value = resolve_futures(self._call(run.parameters))
                break
            except Exception as exc:
                if attempt >= len(delays):
                    return self._settle(run, State(FAILED, exception=exc, run=run)), None
                run.run_count, run.state = attempt + 2, RETRYING
                if delays[attempt]:
                    time.sleep(delays[attempt])
                attempt += 1
        return self._settle(run, _persisted(run, value)), value

    async def _arun(self, parameters: dict[str, Any]) -> tuple[State, Any]:
        run = await asyncio.to_thread(self._start, parameters)
        delays = self._delays()
        timeout = self.options.timeout_seconds
        attempt = 0
        while True:
            try:
                with _running(run, wait=False):
                    body = self._call(run.parameters)
                    value = await (asyncio.wait_for(body, timeout) if timeout else body)
                await asyncio.to_thread(_wait_for_tasks, run)
                value = await asyncio.to_thread(resolve_futures, value)
                break
            except Exception as exc:
                await asyncio.to_thread(_wait_for_tasks, run)
                if attempt >= len(delays):
                    return await asyncio.to_thread(
                        self._settle, run, State(FAILED, exception=exc, run=run)), None
                run.run_count, run.state = attempt + 2, RETRYING
                if delays[attempt]:
                    await asyncio.sleep(delays[attempt])
                attempt += 1
        state = await asyncio.to_thread(_persisted, run, value)
        return await asyncio.to_thread(self._settle, run, state), value

    def _settle(self, run: FlowRun, state: State) -> State:
        run.state = state.name
        flow_run_finished(run, state.name, time.perf_counter() - run.started, state.exception)
        hooks = self.options.on_failure if state.name == FAILED else self.options.on_completion
        if hooks:
            from ..transactions import run_maybe_async  # lazy: ~2.5 ms most runs never need

            for hook in hooks:
                try:
                    run_maybe_async(hook(self, run, state))
                except Exception:
                    _LOG.exception("hook %r of flow %r failed", hook, self.name)
        return state


class _running:
    """The flow run is current (for tasks, subflows and keyed transactions) while the body
    runs; afterwards its submitted tasks are waited for and its task runner shut down."""

    def __init__(self, run: FlowRun, wait: bool = True):
        self.run, self.wait = run, wait

    def __enter__(self) -> FlowRun:
        config = self.run.config
        self.tokens = (flow_run_var.set(self.run), default_store.set(config.store),
                       prints_to_log(self.run.flow, self.run.name))
        return self.run

    def __exit__(self, *exc: object) -> None:
        flow_run_var.reset(self.tokens[0])
        default_store.reset(self.tokens[1])
        if self.tokens[2] is not None:
            printing_to_log.reset(self.tokens[2])
        if self.wait:
            _wait_for_tasks(self.run)


def _wait_for_tasks(run: FlowRun) -> None:
    for future in run.futures:
        future.wait()
    if run._runner is not None:
        run._runner.shutdown(wait=True)
        run._runner = None


def _persisted(run: FlowRun, value: Any) -> State:
    """A Completed state; with persistence, the value written under the run's id."""
    config = run.config
    if not config.persist:
        return State(COMPLETED, value, run=run)
    store = config.store()
    try:
        store.write(run.id, value)
    except (SerializationError, StorageError) as exc:
        _LOG.warning("flow %r completed but its result was not persisted: %s", run.flow_name, exc)
        return State(COMPLETED, value, run=run)
    if config.in_memory:
        return State(COMPLETED, value, store=store, key=run.id, run=run)
    return State(COMPLETED, store=store, key=run.id, run=run)


def _outcome(state: State, value: Any, return_state: bool) -> Any:
    if return_state:
        return state
    if state.name == FAILED:
        raise state.exception
    return value


if TYPE_CHECKING:  # `@flow` and `@flow(...)` keep the function's types for a type checker
    @overload
    def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...

    @overload
    def flow(fn: None = None, /, **options: Any) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(fn: Callable | None = None, /, **options: Any) -> Any:
    """Make a function a flow: `@flow` or `@flow(option=...)` (see FlowOptions)."""
    checked = make_options(FlowOptions, options)
    if fn is None:
        return lambda function: Flow(function, checked)
    return Flow(fn, checked)


flow.__signature__ = decorator_signature(FlowOptions)  # type: ignore[attr-defined]
