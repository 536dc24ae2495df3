"""DaskTaskRunner on a real 2-worker LocalCluster, with results in a shared directory and on real
S3 (moto), GCS (fake-gcs-server) and Azure (Azurite) servers."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import types
from pathlib import Path

import pytest
import sfdask_tasks as T
from sfdask_tasks import BY_INPUTS, lines
from stashflow import ResultStore, flow, unmapped
from stashflow_dask import DaskTaskRunner, TaskNotLoadable, default_cluster_kwargs


def on(cluster) -> DaskTaskRunner:
    return DaskTaskRunner(address=cluster.scheduler_address)


def record_files(root: Path) -> list[str]:
    """Record files under `root` (lock records and temp files, under .stashflow names, left out)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and not any(part.startswith(".stashflow")
                                             for part in p.relative_to(root).parts))


def test_results_persist_from_workers_to_s3_and_a_shared_dir_and_a_fresh_cluster_hits_the_cache(
        cluster, client, fresh_cluster, s3, keys_in, tmp_path, log):
    s3.save("dask-results")  # saved here only: the workers have no blocks of their own
    shared = tmp_path / "shared"
    to_s3 = T.square.with_options(result_storage="s3-bucket/dask-results")
    to_dir = T.square.with_options(result_storage=shared)

    @flow
    def pipeline(n: int):
        a, b = to_s3.map(range(n), log=log), to_dir.map(range(n), log=log)
        return a.result(), b.result()

    first = pipeline.with_options(task_runner=on(cluster))(6, return_state=True)
    in_s3, in_dir = first.result()
    assert [v for v, _ in in_s3] == [v for v, _ in in_dir] == [x * x for x in range(6)]
    assert {p for _, p in in_s3 + in_dir} <= set(client.run(os.getpid).values())  # on the workers
    assert len(lines(log)) == 12
    assert [r.state for r in first.run.task_runs] == ["Completed"] * 12
    records = [k for k in keys_in(s3.bucket_name) if "/.stashflow" not in k]
    assert len(records) == 6 and all(k.startswith("results/") for k in records)
    assert len(record_files(shared)) == 6
    assert {ResultStore(shared).read(k)[0] for k in record_files(shared)} == {0, 1, 4, 9, 16, 25}

    second = pipeline.with_options(task_runner=on(fresh_cluster()))(6, return_state=True)
    assert second.result() == (in_s3, in_dir)  # the pids of the first cluster's workers
    assert [r.state for r in second.run.task_runs] == ["Cached"] * 12
    assert len(lines(log)) == 12  # no body ran again


def test_records_go_to_the_submitting_side_default_storage_signed_with_its_key(
        cluster, stashflow_home, worker_home, monkeypatch, log):
    monkeypatch.setenv("STASHFLOW_RESULTS_SIGNING_KEY", "known-to-the-client-only")

    @flow(task_runner=on(cluster), persist_result=True)
    def f():
        return T.square.map([1, 2], log=log).result()

    assert [v for v, _ in f()] == [1, 4]
    root = stashflow_home / "storage"
    keys = record_files(root)
    assert len(keys) == 3  # the two tasks' and the flow's
    assert all(ResultStore(root).read_record(k).metadata.signed for k in keys)
    assert not (worker_home / "storage").exists()


@pytest.mark.parametrize("where", ["s3", "dir-joined-cluster", "dir-own-local-cluster"])
def test_serializable_key_submitted_from_both_workers_runs_once(where, cluster, request, tmp_path,
                                                               keys_in, log):
    storage = request.getfixturevalue("s3") if where == "s3" else tmp_path / "shared"
    if where == "dir-own-local-cluster":  # the runner's LocalCluster: one machine
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": 2, "dashboard_address": "127.0.0.1:0",
                                                "local_directory": str(tmp_path / "dask")})
    else:  # a cluster joined by address: its workers may be on other machines
        runner = on(cluster)
    once = T.slow_once.with_options(result_storage=storage)

    @flow(task_runner=runner)
    def f():
        futures = once.map([7] * 6, log=log)
        return futures.result(), [future.state.name for future in futures]

    values, states = f()
    assert values == [70] * 6
    assert len(lines(log)) == 1
    assert sorted(states) == ["Cached"] * 5 + ["Completed"]
    # Where the locks lived: lease records in the shared storage (S3, or the directory
    # when the workers may be elsewhere), else flock files beside the records.
    if where == "s3":
        records = [k for k in keys_in(storage.bucket_name) if k.startswith("results/.stashflow/locks/")]
        assert records
    else:
        locks = storage / ".stashflow" / "locks"
        records = [p for p in locks.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
        flocks = list(locks.glob("*.lock"))
        assert (bool(records), bool(flocks)) == (
            (True, False) if where == "dir-joined-cluster" else (False, True))


@pytest.mark.parametrize("backend", ["gcs", "azure"])
def test_gcs_and_azure_records_and_locks_are_written_by_the_workers(backend, cluster, request, log):
    block, names = request.getfixturevalue(backend)  # a block with its endpoint and credentials
    once = T.slow_once.with_options(result_storage=block)
    squares = T.square.with_options(result_storage=block)

    @flow(task_runner=on(cluster))
    def f():
        return (once.map([3] * 4, log=log, seconds=0.3).result(),
                [v for v, _ in squares.map([1, 2], log=log).result()])

    assert f() == ([30] * 4, [1, 4])
    runs = lines(log)
    assert len(runs) == 3 and sum(r.startswith("slow_once") for r in runs) == 1
    stored = names()
    assert len([k for k in stored if "/.stashflow/" not in k]) == 3
    assert any(k.startswith("results/.stashflow/locks/") for k in stored)


def test_an_explicit_lock_manager_is_kept_on_a_joined_cluster(cluster, tmp_path, log):
    policy = BY_INPUTS.configure(isolation_level="SERIALIZABLE", lock_manager="file")
    once = T.slow_once.with_options(result_storage=tmp_path / "shared", cache_policy=policy)

    @flow(task_runner=on(cluster))
    def f():
        return once.map([8, 8], log=log, seconds=0.1).result()

    assert f() == [80, 80] and len(lines(log)) == 1
    assert list((tmp_path / "shared" / ".stashflow" / "locks").glob("*.lock"))


def test_futures_passed_to_submits_are_dependencies(cluster, tmp_path, log):
    @flow(task_runner=on(cluster), result_storage=tmp_path / "r")
    def f():
        a = T.add.submit(1, 2, log)
        b = T.add.submit(a, 10, log)
        c = T.total.submit([a, b], {"k": T.add.submit(b, b, log)}, log)
        chained = T.add.map(T.add.map([1, 2, 3], [10, 20, 30], log=log), 100, log=log)
        return c.result(), chained.result()

    assert f() == (3 + 13 + 26, [111, 122, 133])


def test_a_large_flow_parameter_is_sent_to_the_cluster_once_not_with_every_task(
        cluster, tmp_path, log, monkeypatch):
    from stashflow.cache_policies import FLOW_PARAMETERS
    from stashflow_dask import _worker

    payloads: list[bytes] = []
    real = _worker.dumps

    def spy(*args, **kwargs):
        payloads.append(real(*args, **kwargs))
        return payloads[-1]

    monkeypatch.setattr(_worker, "dumps", spy)
    by_flow = T.add.with_options(cache_policy=BY_INPUTS + FLOW_PARAMETERS)

    @flow(task_runner=on(cluster), result_storage=tmp_path / "r")
    def f(blob: bytes):
        return by_flow.map(range(4), 1, log=log).result()

    assert f(os.urandom(1 << 20)) == [1, 2, 3, 4]  # the workers saw the flow's parameters
    assert len(payloads) == 4 and max(map(len, payloads)) < 16 * 1024  # not 1 MiB each
    assert f(os.urandom(1 << 20)) == [1, 2, 3, 4] and len(lines(log)) == 8  # other parameters


def test_values_not_kept_in_memory_are_read_back_from_s3(cluster, s3, keys_in, log):
    lean = T.add.with_options(result_storage=s3, cache_result_in_memory=False)

    @flow(task_runner=on(cluster))
    def f():
        first = lean.submit(20, 1, log)
        return first.result(), lean.submit(first, 1, log).result()  # read on a worker

    assert f() == (21, 22)
    assert len([k for k in keys_in(s3.bucket_name) if "/.stashflow" not in k]) == 2


def test_map_with_unmapped_arguments(cluster, tmp_path, log):
    @flow(task_runner=on(cluster), result_storage=tmp_path / "r")
    def f():
        return T.total.map([[1], [2, 3], []], unmapped({"k": 100}), log=log).result()

    assert f() == [101, 105, 100]
    assert len(lines(log)) == 3


def test_futures_and_run_records_are_settled_when_the_flow_ends(cluster, tmp_path, log):
    kept = []

    @flow(task_runner=on(cluster), result_storage=tmp_path / "r")
    def f():
        kept.extend(T.add.map([1, 2], [3, 4], log=log))  # never waited for in the flow

    state = f(return_state=True)
    assert [future.result() for future in kept] == [4, 6]
    assert [(r.state, r.key is not None) for r in state.run.task_runs] == [("Completed", True)] * 2


@pytest.mark.parametrize("where", ["dir", "s3"])
def test_worker_killed_while_writing_a_record_is_rescheduled_and_leaves_no_torn_record(
        where, fresh_cluster, request, tmp_path, keys_in, log):
    cluster = fresh_cluster()
    storage = request.getfixturevalue("s3") if where == "s3" else tmp_path / "shared"
    serializer = T.PausingPickle(log, str(tmp_path / "paused-once"))
    big = T.big.with_options(result_storage=storage, result_serializer=serializer)
    killed: list[int] = []

    def kill_the_writer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            writing = [line for line in lines(log) if line.startswith("writing ")]
            if writing:
                pid = int(writing[0].split()[1])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_writer)
    killer.start()

    @flow(task_runner=on(cluster))
    def f():
        return big.submit(4000, log).result(), T.add.submit(1, 2, log).result()

    try:
        value, other = f()
    finally:
        killer.join()
    assert killed and value == bytes(range(256)) * 4000 and other == 3
    bodies = [line for line in lines(log) if line.startswith("big ")]
    writes = [line for line in lines(log) if line.startswith("writing ")]
    assert len(bodies) == 2 and len(writes) == 2  # run again elsewhere after the kill
    assert int(writes[1].split()[1]) != killed[0]
    store = ResultStore(storage, serializer)
    keys = (record_files(storage) if where == "dir" else
            [k.removeprefix("results/") for k in keys_in(storage.bucket_name)
             if "/.stashflow" not in k])
    assert len(keys) == 1 and store.read(keys[0]) == value


def test_a_lock_holder_killed_on_one_worker_delays_the_others_at_most_its_lease(
        fresh_cluster, s3, keys_in, log, tmp_path):
    from stashflow.locking import StorageLockManager

    cluster = fresh_cluster()
    lease = 2.0
    policy = T.hold_once.cache_policy.configure(
        lock_manager=StorageLockManager(s3, default_lease=lease))
    once = T.hold_once.with_options(result_storage=s3, cache_policy=policy)
    killed: list[tuple[int, float]] = []

    def kill_the_holder():  # the first execution holds the lock for a minute
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not lines(log):
            time.sleep(0.01)
        pid = int(lines(log)[0].split()[2])
        os.kill(pid, signal.SIGKILL)
        killed.append((pid, time.monotonic()))

    killer = threading.Thread(target=kill_the_holder)
    killer.start()

    @flow(task_runner=on(cluster))
    def f():
        futures = once.map([5, 5], log=log, marker=str(tmp_path / "first"))
        return futures.result(), [future.state.name for future in futures]

    try:
        values, states = f()
    finally:
        killer.join()
    done = time.monotonic()
    assert values == [50, 50] and sorted(states) == ["Cached", "Completed"]
    runs = lines(log)
    assert len(runs) == 2 and int(runs[1].split()[2]) != killed[0][0]
    assert done - killed[0][1] < lease + 8.0  # the lease, the second body, generous slack
    assert len([k for k in keys_in(s3.bucket_name) if "/.stashflow" not in k]) == 1


def test_a_task_failing_on_a_worker_raises_its_error_naming_the_run_and_worker(cluster, tmp_path,
                                                                            log):
    @flow(task_runner=on(cluster), result_storage=tmp_path / "r")
    def f():
        return T.fail.submit(3).result()

    with pytest.raises(ValueError, match="bad input 3") as info:
        f()
    (note,) = info.value.__notes__
    assert note.startswith("raised in task run 'fail-") and "on Dask worker tcp://127.0.0.1:" in note

    state = f(return_state=True)
    (run,) = state.run.task_runs
    assert run.state == "Failed" and f"task run {run.name!r}" in state.exception.__notes__[0]

    @flow(task_runner=on(cluster), result_storage=tmp_path / "r")
    def downstream():
        return T.add.submit(T.fail.submit(4), 1, log).result()

    state = downstream(return_state=True)
    assert state.is_failed() and "bad input 4" in str(state.exception)
    assert lines(log) == []  # the downstream body never ran


def test_an_argument_whose_class_is_not_on_the_workers_fails_with_a_clear_error(cluster, log):
    module = types.ModuleType("sfdask_client_only")
    exec("class Amount(int):\n    pass\n", module.__dict__)
    sys.modules[module.__name__] = module  # importable here, not on the workers
    try:
        @flow(task_runner=on(cluster))
        def f():
            return T.add.submit(module.Amount(1), 2, log).result()

        with pytest.raises(TaskNotLoadable, match="sfdask_client_only") as info:
            f()
        assert "could not be loaded on Dask worker tcp://127.0.0.1:" in str(info.value)
        assert "register_pickle_by_value" in str(info.value)
    finally:
        del sys.modules[module.__name__]


def test_an_argument_that_does_not_pickle_is_refused_at_submit(cluster, log):
    @flow(task_runner=on(cluster))
    def f():
        return T.add.submit(threading.Lock(), 1, log)

    with pytest.raises(TypeError, match=r"task run 'add-.*' cannot be sent to Dask"):
        f()


def test_runner_runs_any_function_and_cancels_what_is_left_on_shutdown_without_wait(cluster):
    from concurrent.futures import CancelledError

    runner = DaskTaskRunner(address=cluster.scheduler_address)
    with runner:
        assert runner.submit(pow, 2, 10).result() == 1024
        assert runner.client is not None and runner.cluster is None  # joined, not started
    assert runner.client is None
    runner.start()
    slow = runner.submit(time.sleep, 0.5)
    runner.shutdown(wait=False)
    assert slow.done()
    with pytest.raises(CancelledError):
        slow.result()


def test_workers_load_the_plugins_through_their_entry_points(client, worker_home):
    for storage, runners, home in client.run(T.registry_here).values():
        assert {"local-file-system", "s3-bucket", "gcs-bucket", "azure-blob-storage"} <= set(storage)
        assert "dask" in runners
        assert home == str(worker_home) and not (worker_home / "blocks").exists()


def test_runner_is_registered_and_configured():
    from stashflow.registry import get_registry

    assert get_registry().task_runners["dask"] is DaskTaskRunner
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 1}, client_kwargs={"timeout": 5})
    copy = runner.duplicate()
    assert (copy.address, copy.cluster_kwargs, copy.client_kwargs) == (
        None, {"n_workers": 1}, {"timeout": 5})
    assert copy is not runner and copy.client is None
    assert default_cluster_kwargs()["processes"] is True
    with pytest.raises(ValueError, match="cluster_kwargs"):
        DaskTaskRunner("tcp://127.0.0.1:8786", cluster_kwargs={"n_workers": 1})
