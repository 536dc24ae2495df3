"""Run stashflow tasks on a Dask cluster: `DaskTaskRunner`.

`DaskTaskRunner()` starts a `distributed.LocalCluster` for each flow run;
`DaskTaskRunner("tcp://scheduler:8786")` joins a running scheduler. Each
submitted run is pickled here (cloudpickle) together with its resolved
persistence - storage block, serializer, signing key, cache policy - and run
by the engine on a worker, so records are written, and cached records found,
from the workers in the flow's storage: workers need the same packages, never
saved blocks or settings of their own. Futures passed to other submits become
Dask dependencies: values move from worker to worker, not through the client.
"""

from __future__ import annotations

import contextlib
import copy
import os
import pickle
import threading
import uuid
from concurrent.futures import CancelledError
from typing import Any

from stashflow import hookimpl
from stashflow.engine import FlowRun, State, TaskConfig, TaskRun, TaskRunner

__all__ = ["DaskTaskRunner", "TaskNotLoadable", "default_cluster_kwargs"]

_PENDING: Any = object()
SHARE_FLOW_RUN_BYTES = 64 * 1024  # a flow run pickled larger is scattered once, not sent per task


class TaskNotLoadable(RuntimeError):
    """A task run could not be unpickled on a Dask worker (its code or a plugin is missing there)."""


def default_cluster_kwargs() -> dict[str, Any]:
    """What `DaskTaskRunner()` gives `LocalCluster`; its `cluster_kwargs` override any of it.

    One single-threaded worker process per core (Python task bodies then do not
    share a GIL), everything on loopback only, and the scheduler's HTTP server
    (the dashboard, with bokeh installed) on a free port rather than 8787, which a
    second cluster would find taken (`runner.client.dashboard_link` says where).
    """
    return {"n_workers": os.cpu_count() or 1, "threads_per_worker": 1, "processes": True,
            "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}


class DaskTaskRunner(TaskRunner):
    """Runs submitted tasks on Dask: a LocalCluster per flow run, or the scheduler at `address`.

    `cluster_kwargs` go to `distributed.LocalCluster` (over `default_cluster_kwargs()`),
    `client_kwargs` to `distributed.Client`. While a flow run is running, `client`
    is its `distributed.Client` (and `cluster` the LocalCluster it started, if any).
    """

    name = "dask"

    def __init__(self, address: str | None = None, cluster_kwargs: dict[str, Any] | None = None,
                 client_kwargs: dict[str, Any] | None = None):
        if address is not None and cluster_kwargs:
            raise ValueError("cluster_kwargs configure the LocalCluster started when no address "
                             "is given; the cluster at an address is already running")
        self.address = address
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self.client: Any = None
        self.cluster: Any = None
        self._runs: list[DaskRun] = []
        self._by_task_run: dict[int, DaskRun] = {}  # id(task run) -> its run: finds dependencies
        self._flow_runs: dict[int, tuple[FlowRun, Any]] = {}  # id -> (run, scattered or None)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        if self.address is not None:
            return f"DaskTaskRunner(address={self.address!r})"
        return f"DaskTaskRunner(cluster_kwargs={self.cluster_kwargs!r})"

    def duplicate(self) -> DaskTaskRunner:
        return type(self)(self.address, self.cluster_kwargs, self.client_kwargs)

    def start(self) -> None:
        with self._lock:
            if self.client is not None:
                return
            from distributed import Client, LocalCluster

            address, cluster = self.address, None
            if address is None:
                cluster = LocalCluster(**{**default_cluster_kwargs(), **self.cluster_kwargs})
                address = cluster.scheduler_address
            try:
                self.client = Client(address, **{"set_as_default": False, **self.client_kwargs})
            except BaseException:
                if cluster is not None:
                    cluster.close()
                raise
            self.cluster = cluster

    def shutdown(self, wait: bool = True) -> None:
        """Fetch the outcome of every run not fetched yet (cancel them unless `wait`), disconnect.

        The futures stay usable after the flow run: they keep their states, and a
        state whose value was not kept in memory reads its record from storage.
        """
        with self._lock:
            client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
            runs, self._runs, self._by_task_run, self._flow_runs = self._runs, [], {}, {}
        if client is None:
            return
        try:
            pending = [run for run in runs if not run._settled()]
            if wait:
                _settle_all(client, pending)
            else:
                client.cancel([run.future for run in pending])
        finally:
            for run in runs:
                if not run._settled():  # cancelled, or the cluster went away
                    run._error = CancelledError(f"{run!r} did not finish before its flow run")
                run.future = None  # released: the workers may drop the values
            client.close()
            if cluster is not None:
                cluster.close()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> DaskRun:
        from ._worker import dumps, run_on_worker

        if self.client is None:
            self.start()
        task_run = next((a for a in args if isinstance(a, TaskRun)), None)
        if task_run is not None:  # its id, made now, names it on both sides and in Dask
            key = f"{task_run.task_name}-{task_run.id}"
        else:
            key = f"{getattr(fn, '__name__', 'run')}-{uuid.uuid4().hex}"
        if self.address is not None:
            args = tuple(map(_locks_across_machines, args))
        upstream: list[Any] = []
        payload = dumps((fn, args, kwargs), self, upstream, task_run)
        future = self.client.submit(run_on_worker, payload, *upstream, key=key, pure=False)
        run = DaskRun(future, task_run)
        with self._lock:
            self._runs.append(run)
            if task_run is not None:
                self._by_task_run[id(task_run)] = run
        return run

    def upstream_future(self, task_run: TaskRun) -> Any:
        """The Dask future of a run submitted here and still on the cluster, else None."""
        run = self._by_task_run.get(id(task_run))
        return None if run is None else run.future

    def shared_flow_run(self, flow_run: FlowRun) -> Any:
        """None to send `flow_run` inline with each task run, or the Dask future of its
        pickle, scattered once (parameters over SHARE_FLOW_RUN_BYTES are not copied per task)."""
        with self._lock:
            known = self._flow_runs.get(id(flow_run))
            if known is None:
                import cloudpickle

                data = cloudpickle.dumps(flow_run, protocol=pickle.HIGHEST_PROTOCOL)
                future = (self.client.scatter(data, hash=False)
                          if len(data) > SHARE_FLOW_RUN_BYTES else None)
                known = self._flow_runs[id(flow_run)] = (flow_run, future)
            return known[1]


class DaskRun:
    """What `DaskTaskRunner.submit` returns: the Dask future of a run's State, kept once fetched."""

    __slots__ = ("_error", "_value", "future", "task_run")

    def __init__(self, future: Any, task_run: TaskRun | None):
        self.future = future
        self.task_run = task_run
        self._value: Any = _PENDING  # the State, once fetched
        self._error: BaseException | None = None  # or what fetching it raised

    def _settled(self) -> bool:
        return self._value is not _PENDING or self._error is not None

    def _settle(self, value: Any) -> None:
        if isinstance(value, State) and value.run is None and self.task_run is not None:
            # It ran on a worker: bring the run record here up to date.
            self.task_run.state, self.task_run.key = value.name, value.key
            value.run = self.task_run
        self._value = value

    def done(self) -> bool:
        return self._settled() or self.future.done()

    def result(self, timeout: float | None = None) -> Any:
        if not self._settled():
            try:
                self._settle(self.future.result(timeout))
            except TimeoutError:
                raise
            except Exception as exc:
                self._error = exc
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait, without fetching the value; the exception the run raised, or None."""
        if not self._settled():
            if self.future.exception(timeout) is None and self.future.status == "finished":
                return None
            with contextlib.suppress(Exception):
                self.result()
        return self._error

    def __repr__(self) -> str:
        return f"DaskRun({self.task_run!r})"


def _locks_across_machines(arg: Any) -> Any:
    """A task's config, with storage locks where the engine would lock a local path with flock.

    The workers of a cluster joined by address may be on other machines sharing the
    path (NFS and the like), where flock does not exclude. An explicit lock manager stays.
    """
    if (isinstance(arg, TaskConfig) and arg.isolation_level is not None
            and arg.lock_manager is None and arg.store is not None
            and arg.store.storage.type_slug == "local-file-system"):
        arg = copy.copy(arg)
        arg.lock_manager = "storage"
    return arg


def _settle_all(client: Any, runs: list[DaskRun]) -> None:
    """Wait for `runs`, then fetch their states in one gather."""
    for run in runs:
        run.future.exception()  # waits; fetches nothing for a run that returned
    finished = [run for run in runs if run.future.status == "finished"]
    try:
        states = client.gather([run.future for run in finished])
    except Exception:  # one vanished meanwhile (its worker died): fetched one by one below
        states = []
    for run, state in zip(finished, states, strict=False):
        run._settle(state)
    for run in runs:
        if not run._settled():
            with contextlib.suppress(Exception):  # kept in the run for whoever asks
                run.result()


@hookimpl
def register_task_runners(register):
    register(DaskTaskRunner.name, DaskTaskRunner)
