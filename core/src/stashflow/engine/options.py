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


class _NotGiven:
    """The one value meaning "this option was not passed" (pickles as itself)."""

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __reduce__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()  # cache_policy not passed: DEFAULT applies, no persistence implied


def _delays(value: Any) -> tuple[float, ...]:
    values = tuple(value) if isinstance(value, Iterable) else (value,)
    if not values or any(not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0
                         for v in values):
        raise ValueError(f"retry_delay_seconds must be seconds >= 0 (or a list of them), "
                         f"not {value!r}")
    return tuple(float(v) for v in values)


def _set(options: Any, name: str, value: Any) -> None:
    object.__setattr__(options, name, value)  # normalizing a frozen dataclass in __post_init__


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """What `@task(...)` takes; see the engine docs for each option's meaning."""

    name: str | None = None
    persist_result: bool | None = None
    result_storage: Any = None
    result_storage_key: str | None = None
    result_serializer: Any = None
    cache_policy: Any = NOT_GIVEN
    cache_key_fn: Callable[..., str | None] | None = None
    cache_expiration: timedelta | float | None = None
    refresh_cache: bool | None = None
    cache_result_in_memory: bool = True
    retries: int = 0
    retry_delay_seconds: float | Iterable[float] = 0

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
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be an int >= 0, not {self.retries!r}")
        _delays(self.retry_delay_seconds)  # checked now, used by the run

    @property
    def cache_policy_given(self) -> bool:
        return self.cache_policy is not NOT_GIVEN

    @property
    def delays(self) -> tuple[float, ...]:
        return _delays(self.retry_delay_seconds)


@dataclasses.dataclass(frozen=True)
class FlowOptions:
    """What `@flow(...)` takes."""

    name: str | None = None
    persist_result: bool | None = None
    result_storage: Any = None
    result_serializer: Any = None
    cache_result_in_memory: bool = True
    task_runner: Any = None

    def __post_init__(self) -> None:
        _set(self, "cache_result_in_memory", bool(self.cache_result_in_memory))


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
