"""Shipping a run to a worker and running it there (imported on first submit, and by workers)."""

from __future__ import annotations

import io
import os
import pickle
import threading
import traceback
from typing import Any

import cloudpickle
from stashflow.engine import FlowRun, State, TaskRun, TaskRunFuture


class _Raised:
    """How an upstream run ended when it raised instead of returning a State."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException):
        self.exc = exc


class _Pickler(cloudpickle.Pickler):
    """cloudpickle, with upstream futures (and a large flow run) replaced by Dask dependencies.

    `runner` answers `upstream_future(task_run)`: the Dask future of a run it still
    has on the cluster, else None; and `shared_flow_run(flow_run)`: None to pickle
    the flow run inline, or the future of its scattered pickle.
    """

    def __init__(self, file: Any, runner: Any, upstream: list[Any]):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.runner, self.upstream = runner, upstream

    def _refer(self, future: Any) -> int:
        self.upstream.append(future)
        return len(self.upstream) - 1

    def persistent_id(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is FlowRun:
            future = self.runner.shared_flow_run(obj)
            return None if future is None else ("flow_run", self._refer(future), obj.id)
        if kind is not TaskRunFuture:
            return None
        name = obj.task_run.task_name
        future = self.runner.upstream_future(obj.task_run)
        if future is not None:  # a Dask dependency: its State reaches the worker directly
            return ("upstream", self._refer(future), name)
        try:  # from another runner: send how it ended
            obj.wait()
            return ("outcome", obj.state, name)
        except Exception as exc:
            return ("outcome", _Raised(exc), name)


def dumps(obj: Any, runner: Any, upstream: list[Any], task_run: TaskRun | None) -> bytes:
    """`obj` pickled; the Dask futures it depends on are appended to `upstream`."""
    buffer = io.BytesIO()
    try:
        _Pickler(buffer, runner, upstream).dump(obj)
    except Exception as exc:
        what = f"task run {task_run.name!r}" if task_run is not None else "a task run"
        raise TypeError(f"{what} cannot be sent to Dask: the task or one of its arguments "
                        f"does not pickle ({type(exc).__name__}: {exc})") from exc
    return buffer.getvalue()


# Flow runs scattered to this worker, unpickled once each (their parameters can be big).
_flow_runs: dict[str, FlowRun] = {}
_flow_runs_lock = threading.Lock()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, upstream: tuple[Any, ...]):
        super().__init__(file)
        self.upstream = upstream

    def persistent_load(self, pid: Any) -> Any:
        kind, value, name = pid
        if kind == "flow_run":
            with _flow_runs_lock:
                run = _flow_runs.get(name)
                if run is None:
                    while len(_flow_runs) >= 8:
                        del _flow_runs[next(iter(_flow_runs))]
                    run = _flow_runs[name] = pickle.loads(self.upstream[value])
                return run
        outcome = self.upstream[value] if kind == "upstream" else value
        # The engine resolves it like any future among the arguments (raising an upstream failure).
        return TaskRunFuture(_Settled(outcome), TaskRun(name, None))


class _Settled:
    """A finished future of a known outcome: an upstream run, on the worker."""

    __slots__ = ("outcome",)

    def __init__(self, outcome: State | _Raised):
        self.outcome = outcome

    def result(self, timeout: float | None = None) -> State:
        if isinstance(self.outcome, _Raised):
            raise self.outcome.exc
        return self.outcome

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self.outcome.exc if isinstance(self.outcome, _Raised) else None

    def done(self) -> bool:
        return True


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except ValueError:  # not on a worker
        return f"(pid {os.getpid()})"


def run_on_worker(payload: bytes, *upstream: Any) -> State:
    """On a worker: unpickle a run, run it with the engine, return its State.

    `upstream`: what the payload's references point at - the States of upstream
    runs and the pickled flow run - fetched by Dask.
    """
    from . import TaskNotLoadable

    try:
        fn, args, kwargs = _Unpickler(io.BytesIO(payload), upstream).load()
    except Exception as exc:
        raise TaskNotLoadable(
            f"a task run could not be loaded on Dask worker {_worker_address()}: "
            f"{type(exc).__name__}: {exc}. Workers need the modules the task and its "
            "arguments come from (install them there, or send one with the task: "
            "cloudpickle.register_pickle_by_value(module)) and the stashflow plugins the flow "
            "uses"
        ) from exc
    state = fn(*args, **kwargs)
    if isinstance(state, State) and state.name == "Failed" and state.exception is not None:
        state.exception = _portable(state.exception, args)
    return state


def _portable(exc: BaseException, args: tuple) -> BaseException:
    """`exc` with a note naming the run and the worker, made sure to pickle.

    (distributed pickles tracebacks with tblib: the client shows the worker's frames.)
    """
    task_run = next((a for a in args if isinstance(a, TaskRun)), None)
    where = f"task run {task_run.name!r}" if task_run is not None else "a task run"
    note = f"raised in {where} on Dask worker {_worker_address()}"
    try:
        exc.add_note(note)
        pickle.loads(cloudpickle.dumps(exc))
        return exc
    except Exception:
        trace = "".join(traceback.format_exception(exc)).rstrip()
        return RuntimeError(f"{type(exc).__name__}: {exc} (the exception does not pickle)\n"
                            f"{note}; traceback there:\n{trace}")
