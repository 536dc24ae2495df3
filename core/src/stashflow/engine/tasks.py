"""Tasks: the `@task` decorator, and running one call of a task.

The run path for a persisted task: bind the arguments, resolve futures among
them, compute the key (template, `cache_key_fn` or cache policy), try to read
the record once (a hit returns its value, state "Cached"), else run the body
with retries and write the record. Concurrency control (isolation levels,
locks) goes through `stashflow.transactions` only when a policy asks for it
or a transaction is open around the call.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..cache_policies import DEFAULT, NO_CACHE
from ..exceptions import RECORD_UNUSABLE, ResultNotFound
from ..keys import validate_key
from .context import FlowRun, TaskRun, TaskRunContext, flow_run_var, task_run_var
from .futures import CACHED, COMPLETED, FAILED, FutureList, State, TaskRunFuture, resolve_futures
from .options import NOT_GIVEN, TaskOptions, decorator_signature, rebuild
from .options import make as make_options
from .options import names as option_names
from .options import replace as replace_options
from .persistence import TaskConfig, resolve_task_config, settings_stamp
from .runners import ThreadPoolTaskRunner, resolve_task_runner
from .templates import KeyTemplate

_P = inspect.Parameter


class CacheWarning(UserWarning):
    """A cached record could not be used (corrupted or undecodable); the task runs again."""


class unmapped:
    """Wrap an argument of `Task.map` to pass it whole to every call instead of iterating it."""

    def __init__(self, value: Any):
        self.value = value


class _BodyFailed(Exception):
    """Carries a task body's exception out of a transaction (which then rolls back)."""


# -- argument binding ---------------------------------------------------------------------


def make_binder(fn: Callable, label: str) -> tuple[Callable, Callable, frozenset[str] | None]:
    """(bind(args, kwargs) -> parameters, call(parameters) -> value, parameter names).

    Plain signatures (no *args, **kwargs or positional-only parameters) bind
    without inspect.Signature.bind: 1.0 us against 3.6 us a call (timeit, 2026-12-04).
    """
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    names = frozenset(p.name for p in params)
    open_names = any(p.kind is _P.VAR_KEYWORD for p in params)
    if all(p.kind in (_P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY) for p in params):
        positional = tuple(p.name for p in params if p.kind is _P.POSITIONAL_OR_KEYWORD)
        defaults = {p.name: p.default for p in params if p.default is not _P.empty}
        n_names, n_pos = len(names), len(positional)

        def bind(args: tuple, kwargs: dict) -> dict[str, Any]:
            if len(args) > n_pos:
                raise TypeError(f"{label}() takes {n_pos} positional arguments but "
                                f"{len(args)} were given")
            bound = dict(zip(positional, args, strict=False))
            for k, v in kwargs.items():
                if k in bound:
                    raise TypeError(f"{label}() got multiple values for argument {k!r}")
                if k not in names:
                    raise TypeError(f"{label}() got an unexpected keyword argument {k!r}")
                bound[k] = v
            if len(bound) != n_names:
                for p in params:
                    if p.name not in bound:
                        if p.name not in defaults:
                            raise TypeError(f"{label}() missing required argument {p.name!r}")
                        bound[p.name] = defaults[p.name]
            return bound

        def call(parameters: dict[str, Any]) -> Any:
            return fn(**parameters)
    else:
        def bind(args: tuple, kwargs: dict) -> dict[str, Any]:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            return dict(bound.arguments)

        def call(parameters: dict[str, Any]) -> Any:
            bound = inspect.BoundArguments(sig, parameters)
            return fn(*bound.args, **bound.kwargs)
    return bind, call, None if open_names else names


def _resolve_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    for name, value in parameters.items():
        resolved = resolve_futures(value)
        if resolved is not value:
            parameters[name] = resolved
    return parameters


def _in_transaction() -> bool:
    # No transaction can be open before stashflow.transactions is (fully) imported, and
    # importing it with the engine costs every process ~2.5 ms (locking and its modules,
    # measured 2026-12-04) that most never use: look it up instead.
    get_transaction = getattr(sys.modules.get("stashflow.transactions"), "get_transaction", None)
    return get_transaction is not None and get_transaction() is not None


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


def check_function(fn: Any, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"@{what} decorates a function, not {fn!r}")
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(f"@{what} does not support async functions yet ({fn.__qualname__}); "
                        "wrap the coroutine in a regular function with asyncio.run")


# -- the task -----------------------------------------------------------------------------


class Task:
    """A function whose calls are runs: persisted, cached and retried as configured.

    `Task(fn, **options)` takes the options of `@task` (engine.options.TaskOptions);
    each is also readable as an attribute (`my_task.retries`).
    """

    def __init__(self, fn: Callable, options: TaskOptions | None = None, **given: Any):
        check_function(fn, "task")
        if options is None:
            options = make_options(TaskOptions, given)
        elif given:
            options = replace_options(options, given)
        self.fn = fn
        self.options = options
        functools.update_wrapper(self, fn)
        for field in option_names(TaskOptions):
            setattr(self, field, getattr(options, field))
        self.name = options.name or getattr(fn, "__name__", type(fn).__name__)
        # What the engine runs with: DEFAULT when no policy was given, NO_CACHE for None.
        policy = options.cache_policy
        self.cache_policy = DEFAULT if policy is NOT_GIVEN else NO_CACHE if policy is None else policy
        self._cache_policy_given = options.cache_policy_given
        self._delays = options.delays
        self._bind, self._call, names = make_binder(fn, self.name)
        self._template = (None if options.result_storage_key is None
                          else KeyTemplate(options.result_storage_key, names))
        self._configs: dict[Any, TaskConfig] = {}

    def __repr__(self) -> str:
        return f"Task(name={self.name!r})"

    def __reduce__(self) -> tuple:
        # Rebuilt from the function and options (for runners that ship tasks elsewhere).
        return rebuild, (Task, self.fn, self.options)

    def with_options(self, **options: Any) -> Task:
        """A new task with some options changed (the same names as `@task`)."""
        try:
            return Task(self.fn, replace_options(self.options, options))
        except TypeError as exc:
            raise TypeError(f"with_options(): {exc}") from None

    # -- configuration -------------------------------------------------------------------

    def _config(self, flow_run: FlowRun | None) -> TaskConfig:
        if flow_run is not None:
            marker: Any = flow_run.config
            config = self._configs.get(marker)
            if config is None:
                config = self._resolve(marker, flow_run.config, flow_run.stamp)
            return config
        stamp = settings_stamp()
        config = self._configs.get(stamp)
        if config is None:
            config = self._resolve(stamp, None, stamp)
        return config

    def _resolve(self, marker: Any, flow_config: Any, stamp: tuple) -> TaskConfig:
        if len(self._configs) > 32:
            self._configs.clear()
        config = self._configs[marker] = resolve_task_config(self, flow_config, stamp)
        return config

    # -- calling ---------------------------------------------------------------------------

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        """Run the task now and return its value (its State with return_state=True)."""
        flow_run = flow_run_var.get()
        parameters = self._bind(args, kwargs)
        task_run = TaskRun(self.name, flow_run)
        if flow_run is not None:
            flow_run.task_runs.append(task_run)
        state, value = self._run(parameters, task_run, flow_run)
        if return_state:
            return state
        if state.name == FAILED:
            raise state.exception
        return value

    def submit(self, *args: Any, **kwargs: Any) -> TaskRunFuture:
        """Run the task on the flow's task runner; returns a future at once."""
        return self._submit(self._bind(args, kwargs))

    def map(self, *args: Any, **kwargs: Any) -> FutureList:
        """Submit one run per element of the iterable arguments (wrap others in `unmapped`)."""
        parameters = self._bind(args, kwargs)
        mapped: dict[str, list] = {}
        static: dict[str, Any] = {}
        for name, value in parameters.items():
            if isinstance(value, unmapped):
                static[name] = value.value
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
                                             self._config(flow_run)), task_run)
        if flow_run is not None:
            flow_run.task_runs.append(task_run)
            flow_run.futures.append(future)
        return future

    def _run_for_future(self, parameters: dict, task_run: TaskRun, flow_run: FlowRun | None,
                        config: TaskConfig | None = None) -> State:
        return self._run(parameters, task_run, flow_run, config)[0]

    # -- one run ---------------------------------------------------------------------------

    def _execute(self, context: TaskRunContext) -> Any:
        """The body, with retries, with `context` visible to it."""
        token = task_run_var.set(context)
        try:
            attempt = 0
            while True:
                try:
                    return self._call(context.parameters)
                except Exception:
                    if attempt >= self.retries:
                        raise
                    delay = self._delays[min(attempt, len(self._delays) - 1)]
                    attempt += 1
                    context.task_run.run_count = attempt + 1
                    if delay:
                        time.sleep(delay)
        finally:
            task_run_var.reset(token)

    def _run(self, parameters: dict[str, Any], task_run: TaskRun, flow_run: FlowRun | None,
             config: TaskConfig | None = None) -> tuple[State, Any]:
        parameters = _resolve_parameters(parameters)  # waits for upstream futures
        started = time.perf_counter()
        try:
            return self._run_inner(parameters, task_run, flow_run, config)
        finally:
            task_run.duration = time.perf_counter() - started

    def _run_inner(self, parameters: dict[str, Any], task_run: TaskRun,
                   flow_run: FlowRun | None, config: TaskConfig | None = None
                   ) -> tuple[State, Any]:
        if config is None:
            config = self._config(flow_run)
        context = TaskRunContext(self, task_run, flow_run, parameters)
        if not config.persist:
            try:
                value = self._execute(context)
            except Exception as exc:
                return self._failed(task_run, exc), None
            task_run.state = COMPLETED
            return State(COMPLETED, value, run=task_run), value

        store = config.store
        task_run.store = store
        if config.template is not None:
            key = config.template.format(parameters, flow_run, task_run)
        else:
            key = config.policy.compute_key(
                context, parameters, None if flow_run is None else flow_run.parameters)
            if key is not None:
                validate_key(key)
        cacheable = key is not None
        if not cacheable:  # persisted under a fresh name, never looked up
            key = uuid.uuid4().hex
        if _in_transaction() or (cacheable and (config.isolation_level is not None
                                                or config.lock_manager is not None)):
            return self._run_transaction(context, config, key)

        if cacheable and not config.refresh:
            hit = self._read_cached(store, key)
            if hit is not None:
                return self._finished(CACHED, task_run, config, key, hit[0]), hit[0]
        try:
            value = self._execute(context)
        except Exception as exc:
            return self._failed(task_run, exc), None
        store.write(key, value, expiration=config.expiration)
        return self._finished(COMPLETED, task_run, config, key, value), value

    def _read_cached(self, store: Any, key: str) -> tuple[Any] | None:
        """(value,) from the record at `key`, read once; None for a miss."""
        try:
            return (store.read_record(key).value,)
        except ResultNotFound:  # absent, or expired
            return None
        except RECORD_UNUSABLE as exc:
            warnings.warn(f"task {self.name!r}: cached record {key!r} is unusable, running the "
                          f"task again and overwriting it: {exc}", CacheWarning, stacklevel=2)
            return None

    def _run_transaction(self, context: TaskRunContext, config: TaskConfig, key: str
                         ) -> tuple[State, Any]:
        """The run inside a transaction: under the key's lock (SERIALIZABLE), nested in
        any open transaction, written when the outermost transaction commits."""
        from ..transactions import transaction  # lazy: ~2.5 ms of import that most runs never need

        cached = False
        try:
            with transaction(key=key, store=config.store, isolation_level=config.isolation_level,
                             lock_manager=config.lock_manager, overwrite=config.refresh,
                             expiration=config.expiration) as txn:
                if txn.is_committed():  # a header check, or a value staged in this tree
                    try:
                        value, cached = txn.read(), True
                    except (ResultNotFound, *RECORD_UNUSABLE) as exc:
                        warnings.warn(f"task {self.name!r}: cached record {key!r} is unusable, "
                                      f"running the task again: {exc}", CacheWarning,
                                      stacklevel=2)
                if not cached:
                    try:
                        value = self._execute(context)
                    except Exception as exc:
                        raise _BodyFailed() from exc
                    txn.stage(value)
        except _BodyFailed as failed:
            return self._failed(context.task_run, failed.__cause__), None
        # A nested transaction writes when its outermost parent commits: until then
        # the value is only in memory, so the state keeps it whatever cache_result_in_memory says.
        durable = cached or txn.state == "COMMITTED"
        return self._finished(CACHED if cached else COMPLETED, context.task_run, config, key,
                              value, keep=not durable), value

    @staticmethod
    def _finished(name: str, task_run: TaskRun, config: TaskConfig, key: str, value: Any,
                  keep: bool = False) -> State:
        task_run.state = name
        task_run.key = key
        if config.in_memory or keep:
            return State(name, value, store=config.store, key=key, run=task_run)
        return State(name, store=config.store, key=key, run=task_run)

    @staticmethod
    def _failed(task_run: TaskRun, exc: BaseException) -> State:
        task_run.state = FAILED
        return State(FAILED, exception=exc, run=task_run)


def task(fn: Callable | None = None, /, **options: Any) -> Any:
    """Make a function a task: `@task` or `@task(option=...)` (see TaskOptions)."""
    checked = make_options(TaskOptions, options)  # a wrong option fails at decoration
    if fn is None:
        return lambda function: Task(function, checked)
    return Task(fn, checked)


task.__signature__ = decorator_signature(TaskOptions)  # type: ignore[attr-defined]
