"""States and futures: what a task or flow call returns when you ask for more than its value."""

from __future__ import annotations

import copy
from typing import Any

from ..results import ResultStore

COMPLETED = "Completed"
CACHED = "Cached"
FAILED = "Failed"
PENDING = "Pending"
RETRYING = "Retrying"  # a run between a failed attempt and its next one

_NO_VALUE: Any = object()


class State:
    """The outcome of a run: `name` is "Completed", "Cached", "Failed" (or "Pending").

    `result()` returns the value: from memory when the engine kept it, else
    loaded from the record at `key` (a fresh object on every call).
    """

    __slots__ = ("_store", "_value", "exception", "key", "name", "run")

    def __init__(self, name: str, value: Any = _NO_VALUE, *, store: Any = None,
                 key: str | None = None, exception: BaseException | None = None,
                 run: Any = None):
        self.name = name
        self._value = value
        self._store = store
        self.key = key
        self.exception = exception
        self.run = run

    def result(self, raise_on_failure: bool = True) -> Any:
        if self.name == FAILED:
            if raise_on_failure:
                raise self.exception
            return self.exception
        if self._value is not _NO_VALUE:
            return self._value
        if self._store is not None and self.key is not None:
            return self._store.read(self.key)
        raise RuntimeError(f"the run is {self.name.lower()} and has no result yet")

    async def aresult(self, raise_on_failure: bool = True) -> Any:
        """`result()` for async code: a record is read off the event loop. (Prefect's
        `await state.result()` is `await state.aresult()` here: `result()` never
        returns a coroutine.)"""
        if self._value is not _NO_VALUE or self.name == FAILED:
            return self.result(raise_on_failure)
        import asyncio  # lazy: most programs never need the loop's machinery here

        return await asyncio.to_thread(self.result, raise_on_failure)

    @property
    def location(self) -> str | None:
        """Where the record is (a URL or path), when the result was persisted."""
        if self._store is None or self.key is None:
            return None
        return self._store.storage.url_for(self.key)

    def is_completed(self) -> bool:
        return self.name in (COMPLETED, CACHED)

    def is_cached(self) -> bool:
        return self.name == CACHED

    def is_failed(self) -> bool:
        return self.name == FAILED

    def __repr__(self) -> str:
        return f"State({self.name!r}, key={self.key!r})"

    def __reduce__(self) -> tuple:
        # Name, value (if held), key, exception and where the record is; not the run record.
        store = self._store
        where = None if store is None else (store.storage, store.serializer)
        held = self._value is not _NO_VALUE
        return _state, (self.name, self._value if held else None, held, self.key,
                        self.exception, where)


def _state(name: str, value: Any, held: bool, key: str | None,
           exception: BaseException | None, where: tuple | None) -> State:
    if not held:
        value = _NO_VALUE
    store = None
    if where is not None:

        store = ResultStore(*where)
    return State(name, value, store=store, key=key, exception=exception)


class TaskRunFuture:
    """A submitted task run: `result()`, `wait()`, `state`, `done()`."""

    __slots__ = ("_future", "task_run")

    def __init__(self, future: Any, task_run: Any):
        self._future = future  # resolves to a State
        self.task_run = task_run

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run has finished (its result is not raised here)."""
        import concurrent.futures
        import contextlib

        if hasattr(self._future, "exception"):
            with contextlib.suppress(concurrent.futures.CancelledError):
                self._future.exception(timeout)
        else:
            self._future.result(timeout)

    def done(self) -> bool:
        return self._future.done()

    def _settled(self, timeout: float | None = None) -> State:
        state = self._future.result(timeout)
        if state.run is None:  # it ran in another process: bring the run record up to date
            self.task_run.state, self.task_run.key = state.name, state.key
            state.run = self.task_run
        return state

    def final_state(self, timeout: float | None = None) -> State:
        """The run's State once it has finished (waiting for it)."""
        return self._settled(timeout)

    @property
    def state(self) -> State:
        if not self._future.done():
            return State(PENDING, run=self.task_run)
        return self._settled()

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        return self._settled(timeout).result(raise_on_failure)

    def __repr__(self) -> str:
        return f"TaskRunFuture({self.task_run!r})"


class FutureList(list):
    """The futures `Task.map` returns: `result()` gives the list of values."""

    def wait(self, timeout: float | None = None) -> None:
        for future in self:
            future.wait(timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list:
        return [f.result(timeout, raise_on_failure) for f in self]


_SCALARS = frozenset((int, float, str, bytes, bool, type(None)))


def resolve_futures(value: Any) -> Any:
    """`value` with every TaskRunFuture in it resolved: also inside lists, tuples, sets,
    dicts, namedtuples, dataclasses and pydantic models, which are copied only when a
    future was found in them (the task gets the object itself otherwise)."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is TaskRunFuture or kind is FutureList:
        return value.result()
    if kind in (list, tuple, set, frozenset):
        resolved = [resolve_futures(v) for v in value]
        if all(a is b for a, b in zip(resolved, value, strict=False)):
            return value
        return kind(resolved)
    if kind is dict:
        resolved = {k: resolve_futures(v) for k, v in value.items()}
        if all(resolved[k] is v for k, v in value.items()):
            return value
        return resolved
    if isinstance(value, tuple) and hasattr(kind, "_fields"):  # a namedtuple
        resolved = [resolve_futures(v) for v in value]
        if all(a is b for a, b in zip(resolved, value, strict=True)):
            return value
        return kind(*resolved)
    fields = _fields_of(value, kind)
    if fields:
        resolved = {name: resolve_futures(v) for name, v in fields.items()}
        if all(resolved[name] is v for name, v in fields.items()):
            return value
        changed = copy.copy(value)
        for name, v in resolved.items():
            object.__setattr__(changed, name, v)  # frozen dataclasses too
        return changed
    return value


def _fields_of(value: Any, kind: type) -> dict[str, Any] | None:
    """The fields of a dataclass instance or a pydantic model, by name; None otherwise."""
    if hasattr(kind, "__dataclass_fields__") and not isinstance(value, type):
        return {name: getattr(value, name) for name in kind.__dataclass_fields__
                if hasattr(value, name)}
    model_fields = getattr(kind, "model_fields", None)
    if isinstance(model_fields, dict) and hasattr(value, "__pydantic_fields_set__"):
        return {name: getattr(value, name) for name in model_fields}
    return None
