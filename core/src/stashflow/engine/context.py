"""Run records and the context variables that say which flow and task are running."""

from __future__ import annotations

import time
import uuid
from contextvars import ContextVar
from typing import Any


class FlowRun:
    """One call of a flow. Templates see `id`, `name`, `flow_name` and `run_count`."""

    __slots__ = ("_runner", "config", "flow", "flow_name", "futures", "id", "name",
                 "parameters", "parent", "run_count", "stamp", "started", "state", "task_runs")

    def set_name(self, name: str | None) -> None:
        """`flow_run_name` for this run (None keeps `<flow>-<id>`)."""
        if name is not None:
            self.name = name

    def __init__(self, flow: Any, parameters: dict[str, Any], config: Any, stamp: tuple,
                 parent: FlowRun | None):
        self.id = uuid.uuid4().hex
        self.flow = flow
        self.flow_name = flow.name
        self.name = f"{flow.name}-{self.id[:8]}"
        self.parameters = parameters
        self.config = config
        self.stamp = stamp
        self.parent = parent
        self.run_count = 1
        self.state = "Running"
        self.futures: list = []
        self.task_runs: list[TaskRun] = []
        self._runner = None
        self.started = time.perf_counter()

    def __repr__(self) -> str:
        return f"FlowRun(name={self.name!r}, state={self.state!r})"

    def __reduce__(self) -> tuple:
        # What a task shipped to another process needs: ids, parameters, persistence.
        return _detached_flow_run, (self.id, self.name, self.flow_name, self.parameters,
                                    self.run_count, self.config)


def _detached_flow_run(id: str, name: str, flow_name: str, parameters: dict, run_count: int,
                       config: Any) -> FlowRun:
    """A FlowRun rebuilt in another process: no flow object, runner or futures of its own."""
    run = FlowRun.__new__(FlowRun)
    run.id, run.name, run.flow_name, run.parameters = id, name, flow_name, parameters
    run.run_count, run.config, run.stamp = run_count, config, config.stamp
    run.flow = run.parent = run._runner = None
    run.state = "Running"
    run.futures, run.task_runs = [], []
    run.started = time.perf_counter()
    return run


class TaskRun:
    """One call of a task. Templates see `id`, `name`, `task_name` and `run_count`.

    After the run, `state` is "Completed", "Cached" or "Failed", `key` the storage
    key of its record (None when not persisted) and `location` where that is.
    """

    __slots__ = ("_id", "_name", "duration", "flow_name", "flow_run_id", "key", "run_count",
                 "state", "store", "task_name")

    def __init__(self, task_name: str, flow_run: FlowRun | None):
        self._id: str | None = None
        self._name: str | None = None
        self.task_name = task_name
        self.flow_run_id = flow_run.id if flow_run is not None else None
        self.flow_name = flow_run.flow_name if flow_run is not None else None
        self.run_count = 1
        self.state = "Pending"
        self.key: str | None = None
        self.store: Any = None
        self.duration = 0.0

    @property
    def id(self) -> str:
        if self._id is None:
            self._id = uuid.uuid4().hex
        return self._id

    @property
    def name(self) -> str:
        """The run's name: `task_run_name` when the task has one, else `<task>-<id>`."""
        return self._name if self._name is not None else f"{self.task_name}-{self.id[:8]}"

    def set_name(self, name: str | None) -> None:
        self._name = name

    @property
    def location(self) -> str | None:
        if self.store is None or self.key is None:
            return None
        return self.store.storage.url_for(self.key)

    def __repr__(self) -> str:
        return f"TaskRun(task_name={self.task_name!r}, state={self.state!r}, key={self.key!r})"

    def __getstate__(self) -> tuple:
        return None, {name: getattr(self, name) for name in self.__slots__ if name != "store"}

    def __setstate__(self, state: tuple) -> None:
        for name, value in state[1].items():
            setattr(self, name, value)
        self.store = None


class TaskRunContext:
    """What a cache policy, a `cache_key_fn` and a running task body can see.

    `TaskRunContext.get()` is the current one (None outside a task body).
    """

    __slots__ = ("flow_run", "parameters", "task", "task_run")

    @classmethod
    def get(cls) -> TaskRunContext | None:
        return task_run_var.get()

    def __init__(self, task: Any, task_run: TaskRun, flow_run: FlowRun | None,
                 parameters: dict[str, Any]):
        self.task = task
        self.task_run = task_run
        self.flow_run = flow_run
        self.parameters = parameters

    @property
    def result_store(self) -> Any:
        """The ResultStore this run's result is read from and written to (Prefect's name)."""
        return self.task.config_for(self.flow_run).store

    @property
    def persist_result(self) -> bool:
        """Whether this run's result is persisted, as resolved for it."""
        return self.task.config_for(self.flow_run).persist


flow_run_var: ContextVar[FlowRun | None] = ContextVar("stashflow_flow_run", default=None)
task_run_var: ContextVar[TaskRunContext | None] = ContextVar("stashflow_task_run", default=None)


def get_flow_run() -> FlowRun | None:
    """The flow run this code runs in, or None."""
    return flow_run_var.get()


def get_task_run_context() -> TaskRunContext | None:
    """The task run this code runs in (inside a task body), or None."""
    return task_run_var.get()


class FlowRunContext:
    """What code running inside a flow can see: `flow_run` and `flow`.

    `FlowRunContext.get()` is the current one (None outside a flow run).
    """

    __slots__ = ("flow", "flow_run")

    def __init__(self, flow_run: FlowRun):
        self.flow_run = flow_run
        self.flow = flow_run.flow

    @property
    def parameters(self) -> dict[str, Any]:
        return self.flow_run.parameters

    @property
    def result_store(self) -> Any:
        """The ResultStore of this flow run: where its result, and by default its tasks'
        results, are written (Prefect's name)."""
        return self.flow_run.config.store()

    @property
    def persist_result(self) -> bool:
        return self.flow_run.config.persist

    @classmethod
    def get(cls) -> FlowRunContext | None:
        run = flow_run_var.get()
        return None if run is None else cls(run)


def get_run_context() -> TaskRunContext | FlowRunContext:
    """The context of the task run this code is in, else of its flow run.

    RuntimeError outside both (as Prefect's MissingContextError).
    """
    task_context = task_run_var.get()
    if task_context is not None:
        return task_context
    flow_run = flow_run_var.get()
    if flow_run is not None:
        return FlowRunContext(flow_run)
    raise RuntimeError("no run context: get_run_context() is called outside a task or flow run")
