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

from .binding import check_function, make_binder
from .context import FlowRun, flow_run_var
from .futures import COMPLETED, FAILED, State, resolve_futures
from .options import FlowOptions, decorator_signature, rebuild
from .options import make as make_options
from .options import names as option_names
from .options import replace as replace_options
from .persistence import FlowConfig, resolve_flow_config, settings_stamp


class Flow:
    """A function whose calls are flow runs; tasks called inside belong to the run.

    `Flow(fn, **options)` takes the options of `@flow` (engine.options.FlowOptions);
    each is also readable as an attribute.
    """

    def __init__(self, fn: Callable, options: FlowOptions | None = None, **given: Any):
        check_function(fn, "flow")
        if options is None:
            options = make_options(FlowOptions, given)
        elif given:
            options = replace_options(options, given)
        self.fn = fn
        self.options = options
        functools.update_wrapper(self, fn)
        for field in option_names(FlowOptions):
            setattr(self, field, getattr(options, field))
        self.name = options.name or getattr(fn, "__name__", type(fn).__name__)
        self._bind, self._call, _names = make_binder(fn, self.name)
        self._configs: dict[Any, FlowConfig] = {}

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r})"

    def __reduce__(self) -> tuple:
        return rebuild, (Flow, self.fn, self.options)

    def with_options(self, **options: Any) -> Flow:
        """A new flow with some options changed (the same names as `@flow`)."""
        try:
            return Flow(self.fn, replace_options(self.options, options))
        except TypeError as exc:
            raise TypeError(f"with_options(): {exc}") from None

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


def flow(fn: Callable | None = None, /, **options: Any) -> Any:
    """Make a function a flow: `@flow` or `@flow(option=...)` (see FlowOptions)."""
    checked = make_options(FlowOptions, options)
    if fn is None:
        return lambda function: Flow(function, checked)
    return Flow(fn, checked)


flow.__signature__ = decorator_signature(FlowOptions)  # type: ignore[attr-defined]
