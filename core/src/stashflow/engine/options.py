"""The options of `@task` and `@flow`: one frozen dataclass each, the single list of them.

The decorators, `with_options`, pickling and the resolution against settings
all read these classes, so an option is added in one place. Values are checked
and normalized when an options object is made (a number of seconds becomes a
timedelta, one delay becomes a tuple), so a bad option fails at decoration
time, naming the option.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from ..cache_policies import CachePolicy
from ..durations import as_timedelta
from .retries import check_delays, check_jitter


class _NotGiven:
    """The one value meaning "this option was not passed" (pickles as itself)."""

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __reduce__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()  # cache_policy not passed: DEFAULT applies, no persistence implied


def _hook_tuple(options: Any, name: str) -> None:
    value = getattr(options, name)
    hooks = (value,) if callable(value) else tuple(value or ())
    for hook in hooks:
        if not callable(hook):
            raise TypeError(f"{name} takes callables, not {hook!r}")
    _set(options, name, hooks)


def _set(options: Any, name: str, value: Any) -> None:
    object.__setattr__(options, name, value)  # normalizing a frozen dataclass in __post_init__


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """What `@task(...)` takes; docs/concepts/results.md and caching.md say what each does.

    `retries` and `retry_delay_seconds` left None take STASHFLOW_TASKS_DEFAULT_RETRIES
    and STASHFLOW_TASKS_DEFAULT_RETRY_DELAY_SECONDS when the task runs.
    """

    name: str | None = None
    description: str | None = None
    tags: Iterable[str] = ()
    version: str | None = None
    task_run_name: str | Callable[..., str] | None = None
    persist_result: bool | None = None
    result_storage: Any = None
    result_storage_key: str | None = None
    result_serializer: Any = None
    cache_policy: Any = NOT_GIVEN
    cache_key_fn: Callable[..., str | None] | None = None
    cache_expiration: timedelta | float | None = None
    refresh_cache: bool | None = None
    cache_result_in_memory: bool = True
    retries: int | None = None
    retry_delay_seconds: float | Iterable[float] | Callable[[int], Iterable[float]] | None = None
    retry_jitter_factor: float | None = None
    retry_condition_fn: Callable[..., bool] | None = None
    timeout_seconds: float | None = None
    log_prints: bool | None = None
    on_completion: Iterable[Callable[..., Any]] = ()
    on_failure: Iterable[Callable[..., Any]] = ()
    on_commit: Iterable[Callable[..., Any]] = ()
    on_rollback: Iterable[Callable[..., Any]] = ()

    def __post_init__(self) -> None:
        policy = self.cache_policy
        if policy is ...:  # an older spelling of "not given"
            _set(self, "cache_policy", NOT_GIVEN)
        elif policy is not NOT_GIVEN and policy is not None and not isinstance(policy, (CachePolicy, str)):
            raise TypeError(f"cache_policy must be a CachePolicy or a registered name, not {policy!r}")
        if self.cache_key_fn is not None and not callable(self.cache_key_fn):
            raise TypeError(f"cache_key_fn must be callable, not {self.cache_key_fn!r}")
        _set(self, "cache_expiration", as_timedelta(self.cache_expiration, "cache_expiration"))
        _set(self, "cache_result_in_memory", bool(self.cache_result_in_memory))
        _set(self, "tags", tuple(self.tags or ()))
        _check_retries(self.retries)
        check_delays(self.retry_delay_seconds)
        check_jitter(self.retry_jitter_factor)
        for name in ("retry_condition_fn",):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise TypeError(f"{name} must be callable, not {getattr(self, name)!r}")
        _check_timeout(self.timeout_seconds)
        for name in ("on_completion", "on_failure", "on_commit", "on_rollback"):
            _hook_tuple(self, name)

    @property
    def cache_policy_given(self) -> bool:
        return self.cache_policy is not NOT_GIVEN


def _check_retries(retries: Any) -> None:
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)
                                or retries < 0):
        raise ValueError(f"retries must be an int >= 0, not {retries!r}")


def _check_timeout(timeout: Any) -> None:
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or timeout <= 0):
        raise ValueError(f"timeout_seconds must be a number of seconds > 0, not {timeout!r}")


@dataclasses.dataclass(frozen=True)
class FlowOptions:
    """What `@flow(...)` takes.

    `retries` and `retry_delay_seconds` left None take STASHFLOW_FLOWS_DEFAULT_RETRIES
    and STASHFLOW_FLOWS_DEFAULT_RETRY_DELAY_SECONDS when the flow runs.
    """

    name: str | None = None
    description: str | None = None
    version: str | None = None
    flow_run_name: str | Callable[..., str] | None = None
    persist_result: bool | None = None
    result_storage: Any = None
    result_serializer: Any = None
    cache_result_in_memory: bool = True
    task_runner: Any = None
    retries: int | None = None
    retry_delay_seconds: float | None = None
    timeout_seconds: float | None = None
    log_prints: bool | None = None
    validate_parameters: bool = True
    on_completion: Iterable[Callable[..., Any]] = ()
    on_failure: Iterable[Callable[..., Any]] = ()

    def __post_init__(self) -> None:
        _set(self, "cache_result_in_memory", bool(self.cache_result_in_memory))
        _check_retries(self.retries)
        check_delays(self.retry_delay_seconds)
        _check_timeout(self.timeout_seconds)
        for name in ("on_completion", "on_failure"):
            _hook_tuple(self, name)


def names(options_class: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(options_class))


def replace(options: Any, changes: dict[str, Any]) -> Any:
    """`options` with some changed; a TypeError names any option that does not exist."""
    unknown = set(changes) - set(names(type(options)))
    if unknown:
        raise TypeError(f"unknown options: {', '.join(sorted(unknown))} (the options are: "
                        f"{', '.join(names(type(options)))})")
    return dataclasses.replace(options, **changes)


def make(options_class: type, given: dict[str, Any]) -> Any:
    """An options object from keyword arguments, naming any that are not options."""
    return replace(options_class(), given)


def rebuild(cls: type, fn: Callable, options: Any) -> Any:
    """A Task or Flow from its function and options (how they unpickle)."""
    return cls(fn, options)


def decorator_signature(options_class: type) -> inspect.Signature:
    """`(fn=None, /, *, <every option with its default>)`, for help() and IDEs."""
    params = [inspect.Parameter("fn", inspect.Parameter.POSITIONAL_ONLY, default=None)]
    params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                 annotation=f.type)
               for f in dataclasses.fields(options_class)]
    return inspect.Signature(params)


__all__ = ["NOT_GIVEN", "FlowOptions", "TaskOptions"]
