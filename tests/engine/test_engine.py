"""Flows and tasks: calling, submitting, mapping, subflows, retries, runners, persistence rules."""

import re
import threading
import time

import pytest
from stashflow import ResultStore, flow, task
from stashflow.engine import (
    FutureList,
    TaskRunFuture,
    TaskRunner,
    ThreadPoolTaskRunner,
    get_flow_run,
    get_task_run_context,
    unmapped,
)


@task
def add(x, y=1):
    return x + y


def test_task_called_outside_a_flow_returns_its_value():
    assert add(1) == 2
    assert add(1, y=5) == 6
    assert add.fn(1) == 2 and add.name == "add"


def test_task_called_inside_a_flow_and_flow_parameters():
    @flow
    def f(a, b=10):
        return add(a, b)

    assert f(1) == 11
    assert f(1, b=2) == 3


def test_binding_errors_are_type_errors():
    with pytest.raises(TypeError, match="missing required argument 'x'"):
        add()
    with pytest.raises(TypeError, match="unexpected keyword"):
        add(1, z=2)
    with pytest.raises(TypeError, match="multiple values"):
        add(1, x=2)


def test_varargs_and_positional_only_signatures():
    @task
    def gather(a, /, *rest, scale=1, **named):
        return (a, rest, scale, named)

    assert gather(1, 2, 3, scale=2, k="v") == (1, (2, 3), 2, {"k": "v"})


def test_submit_returns_a_future_with_result_wait_and_state():
    @flow
    def f():
        future = add.submit(2)
        assert isinstance(future, TaskRunFuture)
        future.wait()
        return future.result(), future.state.name, future.done()

    assert f() == (3, "Completed", True)


def test_submit_outside_a_flow():
    future = add.submit(41)
    assert future.result() == 42


def test_futures_passed_as_arguments_are_resolved_also_inside_collections():
    @task
    def total(values, extra):
        return sum(values) + extra["n"]

    @flow
    def f():
        a, b = add.submit(1), add.submit(2)
        return total.submit([a, b], {"n": add.submit(0)}).result()

    assert f() == 2 + 3 + 1


def test_map_with_unmapped_and_length_checks():
    @flow
    def f():
        futures = add.map([1, 2, 3], y=unmapped(10))
        assert isinstance(futures, FutureList)
        pairwise = add.map([1, 2], [10, 20]).result()
        return futures.result(), pairwise

    assert f() == ([11, 12, 13], [11, 22])
    with pytest.raises(ValueError, match="differ in length"):
        add.map([1, 2], [1])
    with pytest.raises(ValueError, match="iterable"):
        add.map(1)


def test_submitted_tasks_run_concurrently_on_the_thread_pool():
    barrier = threading.Barrier(3, timeout=5)

    @task
    def meet(i):
        barrier.wait()  # only passes if three runs are in flight at once
        return i

    @flow
    def f():
        return meet.map(range(3)).result()

    assert f() == [0, 1, 2]


def test_flow_waits_for_submitted_tasks_it_did_not_wait_for():
    done = []

    @task
    def slow():
        time.sleep(0.05)
        done.append(1)

    @flow
    def f():
        slow.submit()

    f()
    assert done == [1]


def test_subflows_and_run_context():
    seen = {}

    @task
    def where():
        ctx = get_task_run_context()
        return ctx.task_run.task_name, ctx.flow_run.flow_name

    @flow
    def child(x):
        seen["child_parent"] = get_flow_run().parent.flow_name
        return where(), x * 2

    @flow(name="parent-flow")
    def parent():
        return child(21)

    assert parent() == (("where", "child"), 42)
    assert seen["child_parent"] == "parent-flow"
    assert get_flow_run() is None


def test_with_options_returns_a_new_task_and_leaves_the_original(storage_root, files):
    renamed = add.with_options(name="plus", result_storage_key="plus-{parameters[x]}")
    assert renamed is not add and renamed.name == "plus" and add.name == "add"
    assert renamed(1) == 2
    assert files(storage_root) == ["plus-1"]
    assert add.result_storage_key is None
    with pytest.raises(TypeError, match="unknown options"):
        add.with_options(colour="red")


def test_flow_with_options():
    @flow
    def f():
        return 1

    g = f.with_options(name="g", persist_result=True)
    state = g(return_state=True)
    assert state.key is not None and f(return_state=True).key is None


def test_failing_task_raises_in_the_flow_and_state_is_failed():
    @task
    def boom():
        raise KeyError("nope")

    @flow
    def f():
        return boom(return_state=True)

    state = f()
    assert state.name == "Failed" and isinstance(state.exception, KeyError)
    with pytest.raises(KeyError):
        state.result()

    @flow
    def g():
        return boom()

    with pytest.raises(KeyError):
        g()
    assert g(return_state=True).name == "Failed"


def test_failed_task_writes_no_record(storage_root, files):
    @task(result_storage_key="never")
    def boom():
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        boom()
    assert files(storage_root) == []


def test_retries_with_float_delays():
    attempts = []

    @task(retries=2, retry_delay_seconds=0.05)
    def flaky():
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise OSError("transient")
        return get_task_run_context().task_run.run_count

    assert flaky() == 3
    assert attempts[1] - attempts[0] >= 0.05 and attempts[2] - attempts[1] >= 0.05


def test_retries_exhausted_fail_and_delay_lists():
    attempts = []

    @task(retries=2, retry_delay_seconds=[0, 0.01])
    def always():
        attempts.append(1)
        raise ValueError("no")

    state = always(return_state=True)
    assert state.name == "Failed" and len(attempts) == 3
    with pytest.raises(ValueError):
        task(lambda: 1, retry_delay_seconds=-1)


def test_retried_task_persists_the_final_value(storage_root):
    attempts = []

    @task(retries=1, result_storage_key="retried")
    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("first")
        return "ok"

    assert flaky() == "ok"
    assert ResultStore(storage_root).read("retried") == "ok"


def test_flow_record_key_is_a_uuid4_hex(storage_root):
    @flow(persist_result=True)
    def f():
        return {"answer": 42}

    state = f(return_state=True)
    assert re.fullmatch(r"[0-9a-f]{32}", state.key)
    assert ResultStore(storage_root).read(state.key) == {"answer": 42}
    assert f(return_state=True).key != state.key


def test_flow_storage_and_serializer_are_inherited_by_tasks_unless_overridden(tmp_path):
    @task(result_storage_key="inherits")
    def inherits():
        return [1]

    @task(result_storage_key="own", result_storage=tmp_path / "own", result_serializer="pickle")
    def own():
        return [2]

    @flow(result_storage=tmp_path / "flow", result_serializer="json")
    def f():
        inherits()
        own()

    f()
    assert ResultStore(tmp_path / "flow").read_record("inherits").metadata.serializer == "json"
    assert ResultStore(tmp_path / "own").read_record("own").metadata.serializer == "pickle"


def test_subflow_inherits_the_parent_persistence(tmp_path):
    @task
    def t():
        return 1

    @flow
    def child():
        return t(return_state=True).key

    @flow(result_storage=tmp_path / "parent")
    def parent():
        return child()

    key = parent()
    assert ResultStore(tmp_path / "parent").read(key) == 1


def test_persistence_precedence_task_over_flow_over_setting(monkeypatch, storage_root, files):
    monkeypatch.setenv("STASHFLOW_RESULTS_PERSIST_BY_DEFAULT", "true")

    @task
    def plain():
        return 1

    @flow(persist_result=False)
    def off():
        return plain(return_state=True).key, plain.with_options(persist_result=True)(
            return_state=True).key

    inherited, explicit = off()
    assert inherited is None and explicit is not None
    assert plain(return_state=True).key is not None  # outside a flow: the setting


def test_task_runner_by_name_class_and_instance():
    calls = []

    class RecordingRunner(ThreadPoolTaskRunner):
        def submit(self, fn, /, *args, **kwargs):
            calls.append(self.max_workers)
            return super().submit(fn, *args, **kwargs)

        def duplicate(self):
            return RecordingRunner(self.max_workers)

    for runner in ("thread", ThreadPoolTaskRunner, RecordingRunner(max_workers=2)):
        @flow(task_runner=runner)
        def f():
            return add.submit(1).result()

        assert f() == 2
    assert calls == [2]


def test_thread_runner_is_registered_through_the_plugin_hook():
    from stashflow.registry import get_registry

    assert get_registry().task_runners["thread"] is ThreadPoolTaskRunner
    assert issubclass(ThreadPoolTaskRunner, TaskRunner)


def test_unknown_task_runner_names_the_dask_plugin(monkeypatch):
    monkeypatch.setenv("STASHFLOW_DISABLE_PLUGINS", "stashflow-dask")  # as if not installed

    @flow(task_runner="dask")
    def f():
        return add.submit(1).result()

    with pytest.raises(LookupError, match="stashflow-dask"):
        f()


def test_state_of_every_task_run_is_recorded_on_the_flow_run(storage_root):
    @task(result_storage_key="once")
    def once():
        return 1

    @flow
    def f():
        once()
        once.submit().wait()
        add(1)

    state = f(return_state=True)
    assert [r.state for r in state.run.task_runs] == ["Completed", "Cached", "Completed"]
    assert state.run.task_runs[0].location.endswith("/once")


def test_settings_change_between_calls_is_seen(tmp_path, monkeypatch, files):
    @task(persist_result=True, result_storage_key="k")
    def t():
        return 1

    monkeypatch.setenv("STASHFLOW_LOCAL_STORAGE_PATH", str(tmp_path / "one"))
    t()
    monkeypatch.setenv("STASHFLOW_LOCAL_STORAGE_PATH", str(tmp_path / "two"))
    t()
    assert files(tmp_path / "one") == ["k"] and files(tmp_path / "two") == ["k"]


REMOTE_TASKS = '''
from stashflow import task

@task(result_storage_key="remote-{parameters[x]}")
def remote_square(x):
    import os
    return (x * x, os.getpid())
'''


def _run_pickled(payload):
    import cloudpickle

    fn, args, kwargs = cloudpickle.loads(payload)
    return fn(*args, **kwargs)


class SpawnedProcessRunner(TaskRunner):
    """A runner that ships every task run to another process, as a distributed runner would."""

    name = "spawned-process"

    def start(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))

    def shutdown(self, wait=True):
        self._pool.shutdown(wait=wait)

    def submit(self, fn, /, *args, **kwargs):
        import cloudpickle

        return self._pool.submit(_run_pickled, cloudpickle.dumps((fn, args, kwargs)))


def test_task_runs_can_be_shipped_to_another_process(storage_root):
    pytest.importorskip("cloudpickle")
    import os

    namespace = {"__name__": "stashflow_remote_test_tasks"}  # not importable: pickled by value
    exec(REMOTE_TASKS, namespace)
    remote_square = namespace["remote_square"]

    @flow(task_runner=SpawnedProcessRunner)
    def f():
        futures = remote_square.map([2, 3])
        return [fut.result() for fut in futures], [fut.state.name for fut in futures]

    values, states = f()
    assert [v[0] for v in values] == [4, 9] and all(v[1] != os.getpid() for v in values)
    assert states == ["Completed", "Completed"]
    assert ResultStore(storage_root).read("remote-3")[0] == 9
    run = f(return_state=True).run
    assert [r.state for r in run.task_runs] == ["Cached", "Cached"]


def test_plugin_registered_task_runner_is_usable_by_name():
    from stashflow import hookimpl, plugins

    class Plugin:
        @hookimpl
        def register_task_runners(self, register):
            register("spawned-process", SpawnedProcessRunner)

    plugins.reset()
    plugins.pm.register(Plugin(), name="test-runners")
    try:
        from stashflow.registry import get_registry

        assert get_registry().task_runners["spawned-process"] is SpawnedProcessRunner
        assert get_registry().task_runners["thread"] is ThreadPoolTaskRunner
    finally:
        plugins.reset()


def test_tasks_flows_and_states_pickle(storage_root):
    cloudpickle = pytest.importorskip("cloudpickle")
    import pickle

    t = task(add.fn, name="renamed", retries=2, result_storage_key="k-{parameters[x]}")
    copy = cloudpickle.loads(cloudpickle.dumps(t))
    assert (copy.name, copy.retries, copy.result_storage_key) == ("renamed", 2, "k-{parameters[x]}")
    assert copy(1) == 2
    f = cloudpickle.loads(cloudpickle.dumps(flow(add.fn, name="f", persist_result=True)))
    assert f.name == "f" and f.persist_result is True
    state = pickle.loads(pickle.dumps(t.with_options(cache_result_in_memory=False)(
        1, return_state=True)))
    assert state.name == "Cached" and state.result() == 2  # reloaded from the record
