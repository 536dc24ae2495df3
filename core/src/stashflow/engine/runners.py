"""Task runners: where submitted task runs execute.

A runner implements `submit(fn, *args, **kwargs)` returning a future-like
object (`result(timeout)`, `done()`, and `exception(timeout)` where it can),
plus `start()` and `shutdown(wait)`. Plugins register runners with the
`register_task_runners(register)` hook: `register(name, cls)`; flows take an
instance, a class or a registered name as `task_runner=`.
"""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar

from ..hookspecs import hookimpl
from ..plugins import install_hint
from ..registry import get_registry


class TaskRunner:
    """Base class of task runners."""

    name: ClassVar[str]

    def start(self) -> None:
        """Acquire resources; called before the first submit of a flow run."""

    def shutdown(self, wait: bool = True) -> None:
        """Release resources; called when the flow run ends."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def duplicate(self) -> TaskRunner:
        """A fresh, unstarted runner with the same configuration (one per flow run)."""
        return type(self)()

    def __enter__(self) -> TaskRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True)


class ThreadPoolTaskRunner(TaskRunner):
    """Runs tasks on a thread pool; each run sees the submitting context (flow run, transaction)."""

    name = "thread"

    def __init__(self, max_workers: int | None = None):
        self.max_workers = max_workers
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def duplicate(self) -> ThreadPoolTaskRunner:
        return type(self)(max_workers=self.max_workers)

    def start(self) -> None:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.max_workers,
                                                    thread_name_prefix="stashflow-task")

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait)

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        if self._executor is None:
            self.start()
        ctx = contextvars.copy_context()
        return self._executor.submit(ctx.run, fn, *args, **kwargs)

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self.max_workers!r})"


def resolve_task_runner(spec: Any, registry: Any = None) -> TaskRunner:
    """A fresh runner from None (thread pool), an instance, a class or a registered name."""
    if spec is None:
        return ThreadPoolTaskRunner()
    if isinstance(spec, TaskRunner):
        return spec.duplicate()
    if isinstance(spec, type) and issubclass(spec, TaskRunner):
        return spec()
    if isinstance(spec, str):

        runners = (registry or get_registry()).task_runners
        cls = runners.get(spec)
        if cls is None:
            hint = install_hint("task_runner", spec)
            raise LookupError(f"unknown task runner {spec!r}"
                              + (f": {hint}" if hint else "")
                              + f" (registered: {', '.join(sorted(runners))})")
        return cls()
    raise TypeError(f"task_runner must be a TaskRunner, a TaskRunner class or a registered "
                    f"name, not {spec!r}")


@hookimpl
def register_task_runners(register):
    register(ThreadPoolTaskRunner.name, ThreadPoolTaskRunner)
