"""Tasks: the `@task` decorator and the Task object - what a task is and how it is called.

A call runs the task now (engine.task_runs: key, cache, body with retries, record)
and returns its value; an `async def` task's call returns a coroutine to await.
`submit` and `map` run calls on the flow's task runner and return futures.
A task on a method binds `self` (or `cls`), which is then not one of its inputs.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from .. import settings
from ..cache_policies import CachePolicy
from .binding import BindsAsMethod, check_function, is_async, make_binder, rebind, unwrap_method
from .context import FlowRun, TaskRun, flow_run_var
from .futures import FAILED, FutureList, State, TaskRunFuture
from .options import TaskOptions, decorator_signature, rebuild
from .options import make as make_options
from .options import names as option_names
from .options import replace as replace_options
from .persistence import (
    TaskConfig,
    declared_cache_policy,
    declared_persistence,
    resolve_task_config,
    settings_stamp,
)
from .retries import delays_for
from .runners import ThreadPoolTaskRunner, resolve_task_runner
from .task_runs import CacheWarning, arun_task, run_task
from .templates import KeyTemplate

P = ParamSpec("P")  # the function's parameters: Task[[int], str] in annotations
R = TypeVar("R")  # what it returns

# Options read as resolved values (Prefect reports them so), or as decorators: not copied.
_RESOLVED = frozenset({"persist_result", "cache_policy", "retries", "retry_delay_seconds",
                       "name", "on_completion", "on_failure", "on_commit", "on_rollback"})


class unmapped:
    """Wrap an argument of `Task.map` to pass it whole to every call instead of iterating it."""

    def __init__(self, value: Any):
        self.value = value


_default_runner: Any = None
_runner_lock = threading.Lock()


def _runner_for(flow_run: FlowRun | None) -> Any:
    """The flow run's task runner (started on first use), or a shared one outside flows."""
    global _default_runner
    with _runner_lock:
        if flow_run is not None:
            if flow_run._runner is None:
                spec = flow_run.flow.task_runner if flow_run.flow is not None else None
                runner = resolve_task_runner(spec)
                runner.start()
                flow_run._runner = runner
            return flow_run._runner
        if _default_runner is None:
            _default_runner = ThreadPoolTaskRunner()
        return _default_runner


class Task(BindsAsMethod, Generic[P, R]):
    """A function whose calls are runs: persisted, cached and retried as configured.

    `Task(fn, **options)` takes the options of `@task` (engine.options.TaskOptions);
    each is readable as an attribute (`my_task.retries`), `persist_result`,
    `cache_policy`, `retries` and `retry_delay_seconds` as the values a run uses now.
    """

    def __init__(self, fn: Callable, options: TaskOptions | None = None, **given: Any):
        fn, self._method_kind = unwrap_method(fn)
        check_function(fn, "task")
        if options is None:
            options = make_options(TaskOptions, given)
        elif given:
            options = replace_options(options, given)
        self.fn = fn
        self.options = options
        functools.update_wrapper(self, fn)
        for field in option_names(TaskOptions):
            if field not in _RESOLVED:
                setattr(self, field, getattr(options, field))
        self.name = options.name or getattr(fn, "__name__", type(fn).__name__)
        self.is_async = is_async(fn)
        self._bind, self._call, names = make_binder(fn, self.name)
        params = list(inspect.signature(fn).parameters)
        self._first_param = params[0] if params else None
        self._template = (None if options.result_storage_key is None
                          else KeyTemplate(options.result_storage_key, names))
        self._configs: dict[Any, TaskConfig] = {}

    def __repr__(self) -> str:
        return f"Task(name={self.name!r})"

    def __reduce__(self) -> tuple:
        # Rebuilt from the function and options (for runners that ship tasks elsewhere).
        if self._bound is not None:
            return rebind, (rebuild(Task, self.fn, self.options), self._bound)
        return rebuild, (Task, self.fn, self.options)

    @functools.cached_property
    def return_annotation(self) -> Any:
        """The function's return annotation, resolved (None: none, or it does not resolve).
        A cached value read back as plain data is revived into it (serializers.revive)."""
        try:
            return typing.get_type_hints(self.fn).get("return")
        except Exception:  # a forward reference that does not resolve: nothing to revive
            return None

    # -- options -------------------------------------------------------------------------

    @property
    def persist_result(self) -> bool | None:
        """As given; True when another option implies it; None: the flow or settings decide."""
        return declared_persistence(self.options)

    @property
    def cache_policy(self) -> CachePolicy | str:
        """The policy a run uses (DEFAULT when none was named, NO_CACHE when not persisted)."""
        return declared_cache_policy(self.options)

    @property
    def retries(self) -> int:
        given = self.options.retries
        return given if given is not None else settings.get("STASHFLOW_TASKS_DEFAULT_RETRIES")

    @property
    def retry_delay_seconds(self) -> float | list[float]:
        """The delay before each retry (a callable's list, or the default setting's)."""
        spec = self.options.retry_delay_seconds
        if spec is None:
            spec = settings.get("STASHFLOW_TASKS_DEFAULT_RETRY_DELAY_SECONDS")
        if callable(spec):
            return list(delays_for(spec, self.retries))
        return spec

    def with_options(self, **options: Any) -> Task:
        """A new task with some options changed (the same names as `@task`)."""
        try:
            new = Task(self.fn, replace_options(self.options, options))
        except TypeError as exc:
            raise TypeError(f"with_options(): {exc}") from None
        new._method_kind, new._bound = self._method_kind, self._bound
        return new

    def _add_hook(self, kind: str, fn: Callable) -> Callable:
        if not callable(fn):
            raise TypeError(f"{kind} takes a callable, not {fn!r}")
        self.options = replace_options(self.options, {kind: (*getattr(self.options, kind), fn)})
        self._configs.clear()
        return fn

    def on_commit(self, fn: Callable) -> Callable:
        """`fn(txn)` runs when the transaction this task's run belongs to commits."""
        return self._add_hook("on_commit", fn)

    def on_rollback(self, fn: Callable) -> Callable:
        """`fn(txn)` runs when the transaction this task's run belongs to rolls back
        (also when another task of it failed)."""
        return self._add_hook("on_rollback", fn)

    def on_completion(self, fn: Callable) -> Callable:
        """`fn(task, task_run, state)` runs after each run that completes (or is cached)."""
        return self._add_hook("on_completion", fn)

    def on_failure(self, fn: Callable) -> Callable:
        """`fn(task, task_run, state)` runs after each run that fails."""
        return self._add_hook("on_failure", fn)

    # -- what a run uses -----------------------------------------------------------------

    def config_for(self, flow_run: FlowRun | None) -> TaskConfig:
        """The options resolved for runs in this flow run (cached per flow configuration,
        or per settings stamp outside flows)."""
        if flow_run is not None:
            marker: Any = flow_run.config
            stamp = flow_run.stamp
        else:
            marker = stamp = settings_stamp()
        config = self._configs.get(marker)
        if config is None:
            if len(self._configs) > 32:
                self._configs.clear()
            config = self._configs[marker] = resolve_task_config(
                self, None if flow_run is None else flow_run.config, stamp)
        return config

    def call_body(self, parameters: dict[str, Any]) -> Any:
        return self._call(parameters)

    def run_name(self, parameters: dict[str, Any]) -> str | None:
        """`task_run_name` for these parameters: a template like "{x}-{self.a}", or a
        callable (no arguments, or the parameters)."""
        spec = self.options.task_run_name
        if spec is None:
            return None
        if callable(spec):
            try:
                return str(spec(parameters) if inspect.signature(spec).parameters else spec())
            except (TypeError, ValueError):
                return str(spec())
        return spec.format(**parameters)

    # -- calling -------------------------------------------------------------------------

    def _parameters(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        return self._bind(self._with_bound(args), kwargs)

    if TYPE_CHECKING:  # what a type checker sees: the function's own parameters and result
        @overload
        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

        @overload
        def __call__(self, *args: Any, return_state: bool, **kwargs: Any) -> Any: ...

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        """Run the task now and return its value (its State with return_state=True).

        An async task's call returns a coroutine: `await my_task(x)`.
        """
        flow_run = flow_run_var.get()
        parameters = self._parameters(args, kwargs)
        task_run = TaskRun(self.name, flow_run)
        if flow_run is not None:
            flow_run.task_runs.append(task_run)
        if self.is_async:
            return self._acall(parameters, task_run, flow_run, return_state)
        return _outcome(*run_task(self, parameters, task_run, flow_run), return_state)

    async def _acall(self, parameters: dict, task_run: TaskRun, flow_run: FlowRun | None,
                     return_state: bool) -> Any:
        return _outcome(*await arun_task(self, parameters, task_run, flow_run), return_state)

    if TYPE_CHECKING:
        @overload
        def submit(self, *args: P.args, **kwargs: P.kwargs) -> TaskRunFuture: ...

        @overload
        def submit(self, *args: Any, return_state: bool, **kwargs: Any) -> Any: ...

    def submit(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        """Run the task on the flow's task runner; returns a future at once (its final State
        with return_state=True)."""
        future = self._submit(self._parameters(args, kwargs))
        return future.final_state() if return_state else future

    def map(self, *args: Any, **kwargs: Any) -> FutureList:
        """Submit one run per element of the iterable arguments (wrap others in `unmapped`)."""
        parameters = self._parameters(args, kwargs)
        mapped: dict[str, list] = {}
        static: dict[str, Any] = {}
        for name, value in parameters.items():
            if isinstance(value, unmapped):
                static[name] = value.value
            elif name == self._first_param and self._bound is not None:
                static[name] = value
            elif isinstance(value, Iterable) and not isinstance(
                    value, (str, bytes, bytearray, Mapping, TaskRunFuture)):
                mapped[name] = list(value)
            else:
                static[name] = value
        if not mapped:
            raise ValueError(f"{self.name}.map() needs at least one iterable argument")
        lengths = {name: len(values) for name, values in mapped.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{self.name}.map(): the iterable arguments differ in length: "
                             + ", ".join(f"{n}={v}" for n, v in lengths.items()))
        count = next(iter(lengths.values()))
        return FutureList(
            self._submit({**static, **{n: v[i] for n, v in mapped.items()}})
            for i in range(count)
        )

    def _submit(self, parameters: dict[str, Any]) -> TaskRunFuture:
        flow_run = flow_run_var.get()
        task_run = TaskRun(self.name, flow_run)
        runner = _runner_for(flow_run)
        # The resolved config travels with the run: a runner that ships it to another
        # process or machine runs it with this process's storage, serializer and settings.
        future = TaskRunFuture(runner.submit(self._run_for_future, parameters, task_run, flow_run,
                                             self.config_for(flow_run)), task_run)
        if flow_run is not None:
            flow_run.task_runs.append(task_run)
            flow_run.futures.append(future)
        return future

    def _run_for_future(self, parameters: dict, task_run: TaskRun, flow_run: FlowRun | None,
                        config: TaskConfig | None = None) -> State:
        if self.is_async:  # on the runner's thread: an event loop of its own
            return asyncio.run(arun_task(self, parameters, task_run, flow_run, config))[0]
        return run_task(self, parameters, task_run, flow_run, config)[0]


def _outcome(state: State, value: Any, return_state: bool) -> Any:
    if return_state:
        return state
    if state.name == FAILED:
        raise state.exception
    return value


if TYPE_CHECKING:  # `@task` and `@task(...)` keep the function's types for a type checker
    @overload
    def task(fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(fn: None = None, /, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(fn: Callable | None = None, /, **options: Any) -> Any:
    """Make a function a task: `@task` or `@task(option=...)` (see TaskOptions)."""
    checked = make_options(TaskOptions, options)  # a wrong option fails at decoration
    if fn is None:
        return lambda function: Task(function, checked)
    return Task(fn, checked)


task.__signature__ = decorator_signature(TaskOptions)  # type: ignore[attr-defined]

__all__ = ["CacheWarning", "Task", "task", "unmapped"]
