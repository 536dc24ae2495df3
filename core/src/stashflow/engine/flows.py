"""Flows: the `@flow` decorator, and running one call of a flow.

A flow run resolves its persistence once (tasks inside inherit it), runs the
function with the run visible to tasks and subflows, waits for the tasks it
submitted, and - when it persists - writes its return value under the run's
id (a uuid4 hex).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .context import FlowRun, flow_run_var
from .futures import COMPLETED, FAILED, State, resolve_futures
from .persistence import FlowConfig, resolve_flow_config, settings_stamp
from .tasks import _rebuild, check_function, make_binder

_OPTIONS = ("name", "persist_result", "result_storage", "result_serializer",
            "cache_result_in_memory", "task_runner")


class Flow:
    """A function whose calls are flow runs; tasks called inside belong to the run."""

    def __init__(self, fn: Callable, name: str | None = None, persist_result: bool | None = None,
                 result_storage: Any = None, result_serializer: Any = None,
                 cache_result_in_memory: bool = True, task_runner: Any = None):
        check_function(fn, "flow")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__)
        functools.update_wrapper(self, fn)
        self.persist_result = persist_result
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.cache_result_in_memory = bool(cache_result_in_memory)
        self.task_runner = task_runner
        self._bind, self._call, _names = make_binder(fn, self.name)
        self._configs: dict[Any, FlowConfig] = {}

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r})"

    def __reduce__(self) -> tuple:
        return _rebuild, (Flow, self.fn, {name: getattr(self, name) for name in _OPTIONS})

    def with_options(self, **options: Any) -> Flow:
        """A new flow with some options changed (the same names as `@flow`)."""
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            raise TypeError(f"with_options() got unknown options: {', '.join(sorted(unknown))}")
        current = {name: getattr(self, name) for name in _OPTIONS}
        return Flow(self.fn, **{**current, **options})

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

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        """Run the flow and return its value (its State with return_state=True)."""
        state, value = self._run(self._bind(args, kwargs))
        if return_state:
            return state
        if state.name == FAILED:
            raise state.exception
        return value

    def _run(self, parameters: dict[str, Any]) -> tuple[State, Any]:
        parent = flow_run_var.get()
        config, stamp = self._config(parent)
        parameters = {k: resolve_futures(v) for k, v in parameters.items()}
        run = FlowRun(self, parameters, config, stamp, parent)
        if parent is not None:
            parent.task_runs.append(run)
        token = flow_run_var.set(run)
        try:
            value = resolve_futures(self._call(parameters))
        except Exception as exc:
            run.state = FAILED
            return State(FAILED, exception=exc, run=run), None
        finally:
            flow_run_var.reset(token)
            for future in run.futures:
                future.wait()
            if run._runner is not None:
                run._runner.shutdown(wait=True)
                run._runner = None
        run.state = COMPLETED
        if not config.persist:
            return State(COMPLETED, value, run=run), value
        store = config.store()
        store.write(run.id, value)
        if config.in_memory:
            return State(COMPLETED, value, store=store, key=run.id, run=run), value
        return State(COMPLETED, store=store, key=run.id, run=run), value


def flow(fn: Callable | None = None, /, *, name: str | None = None,
         persist_result: bool | None = None, result_storage: Any = None,
         result_serializer: Any = None, cache_result_in_memory: bool = True,
         task_runner: Any = None) -> Any:
    """Make a function a flow: `@flow` or `@flow(option=...)`."""
    options = {k: v for k, v in locals().items() if k != "fn"}
    if fn is None:
        return lambda function: Flow(function, **options)
    return Flow(fn, **options)
