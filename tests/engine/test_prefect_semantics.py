"""Prefect 3's task semantics that code brought over by renaming relies on: task
commit/rollback hooks, the idempotent keyed transaction, task_input_hash and
cache_key_fn on bound parameters, methods as tasks, the caching settings, resolved
task properties and the modules Prefect users import."""

from __future__ import annotations

import dataclasses

import pydantic
import pytest
from stashflow import flow, task
from stashflow.cache_policies import DEFAULT, INPUTS, NO_CACHE
from stashflow.exceptions import CacheKeyError
from stashflow.transactions import CommitMode, IsolationLevel, get_transaction, transaction

# -- transactions with tasks ---------------------------------------------------------------


def test_a_failing_task_rolls_back_the_side_effect_of_an_earlier_one(tmp_path):
    target = tmp_path / "side-effect.txt"
    events = []

    @task
    def write_file(contents):
        target.write_text(contents)

    @write_file.on_rollback
    def remove_file(txn):
        events.append("rollback")
        target.unlink()

    @write_file.on_commit
    def note_commit(txn):
        events.append("commit")

    @task
    def quality_test():
        raise ValueError("the data is bad")

    @flow
    def pipeline():
        with transaction():
            write_file("hello")
            quality_test()

    with pytest.raises(ValueError, match="the data is bad"):
        pipeline()
    assert not target.exists() and events == ["rollback"]

    @flow
    def good_pipeline():
        with transaction():
            write_file("hello")

    good_pipeline()
    assert target.read_text() == "hello" and events == ["rollback", "commit"]


def test_a_keyed_transaction_that_staged_nothing_is_committed_for_the_next_run():
    bodies = []

    @flow
    def download():
        with transaction(key="download-data") as txn:
            if txn.is_committed():
                return "skipped"
            bodies.append(1)
            return "downloaded"

    assert download() == "downloaded"
    assert download() == "skipped"
    assert bodies == [1]


def test_hooks_read_what_the_task_set_on_the_transaction_and_get_copies():
    seen = []

    @task
    def stage():
        txn = get_transaction()
        txn.set("rows", [1, 2])
        txn.get("rows").append(3)  # get returns a copy: set is how a value changes
        return txn.get("rows")

    @stage.on_commit
    def publish(txn):
        seen.append(txn.get("rows"))
        assert txn.get("missing", "default") == "default"
        with pytest.raises(ValueError, match="missing"):
            txn.get("missing")

    with transaction(commit_mode=CommitMode.EAGER,
                     isolation_level=IsolationLevel.READ_COMMITTED) as txn:
        assert stage() == [1, 2]
    assert txn.is_committed() and seen == [[1, 2]]


def test_a_rolled_back_child_rolls_back_its_parent():
    with transaction() as parent:
        with transaction() as child:
            child.rollback()
        assert child.is_rolled_back()
    assert parent.is_rolled_back()


# -- cache keys ------------------------------------------------------------------------------


def test_task_input_hash_keys_equivalent_calls_alike_and_skips_caching_what_it_cannot_hash():
    from stashflow.tasks import task_input_hash

    bodies = []

    @task(cache_key_fn=task_input_hash, persist_result=True)
    def add(a, b=2):
        bodies.append((a, b))
        return a + b

    assert add(1) == add(a=1) == add(1, b=2) == add(b=2, a=1) == 3
    assert add(2) == 4
    assert bodies == [(1, 2), (2, 2)]

    calls = []

    @task(cache_key_fn=task_input_hash, persist_result=True)
    def takes_a_generator(gen):
        calls.append(1)
        return sum(gen)

    assert takes_a_generator(x for x in (1, 2)) == 3
    assert takes_a_generator(x for x in (1, 2)) == 3
    assert calls == [1, 1]  # not hashable: runs every time, no error (INPUTS would raise)


def test_a_custom_cache_key_fn_sees_the_parameters_bound_with_defaults():
    seen = []

    def key(context, parameters):
        seen.append(dict(parameters))
        return f"sum-{parameters['a'] + parameters['b']}"

    @task(cache_key_fn=key, persist_result=True)
    def add(a, b=2):
        return a + b

    add(1)
    add(a=1, b=2)
    add(b=2, a=1)
    assert seen == [{"a": 1, "b": 2}] * 3
    assert all(list(p) == ["a", "b"] for p in seen)  # the signature's order, as str() shows

    bodies = []

    @task(cache_key_fn=lambda context, parameters: str(parameters), persist_result=True)
    def three(a, b, c=3):
        bodies.append(1)
        return a + b + c

    assert three(1, 2, 3) == three(c=3, a=1, b=2) == three(1, b=2) == 6
    assert bodies == [1]


def test_task_input_hash_changes_with_the_code():
    from stashflow.tasks import task_input_hash

    def make(offset):
        @task(cache_key_fn=task_input_hash, persist_result=True)
        def shifted(x):
            return x + offset
        return shifted

    assert make(1)(1) == 2
    assert make(5)(1) == 6  # another closure: another key


# -- methods -----------------------------------------------------------------------------


class Scaler:
    def __init__(self, factor):
        self.factor = factor
        self.calls = 0

    @task(cache_policy=INPUTS - "calls", persist_result=True)
    def scale(self, x):
        return self.factor * x

    @task
    def count(self):
        self.calls += 1
        return self.calls

    @classmethod
    @task
    def make(cls, factor):
        return cls(factor)

    @staticmethod
    @task
    def add(a, b):
        return a + b


def test_methods_bind_self_and_instances_that_differ_never_share_a_cached_value():
    assert Scaler(2).scale(3) == 6
    assert Scaler(5).scale(3) == 15
    s = Scaler(1)
    assert s.count() == 1 and s.count() == 2 and s.calls == 2  # self is the instance, not a copy
    assert isinstance(Scaler.make(3), Scaler) and Scaler.make(3).factor == 3
    assert Scaler.add(1, 2) == 3 and Scaler(1).add(2, 2) == 4


def test_an_instance_that_cannot_be_hashed_names_self_and_the_way_out():
    import threading

    class Holder:
        def __init__(self):
            self.lock = threading.Lock()

        @task(cache_policy=INPUTS, persist_result=True)
        def value(self, x):
            return x

        @task(cache_policy=INPUTS - "self", persist_result=True)
        def value_without_self(self, x):
            return x

    with pytest.raises(CacheKeyError, match=r"'self'.*INPUTS - 'self'"):
        Holder().value(1)
    assert Holder().value_without_self(1) == 1


# -- settings and resolved properties --------------------------------------------------------


def test_disable_caching_runs_every_body_but_still_persists(monkeypatch, files, storage_root):
    bodies = []

    @task(cache_policy=INPUTS, persist_result=True)
    def one(x):
        bodies.append(x)
        return x

    monkeypatch.setenv("STASHFLOW_TASKS_DISABLE_CACHING", "true")
    one(1)
    one(1)
    assert bodies == [1, 1] and len(files(storage_root)) == 1
    monkeypatch.delenv("STASHFLOW_TASKS_DISABLE_CACHING")
    one(1)
    assert bodies == [1, 1]


def test_default_no_cache_applies_to_tasks_that_name_no_policy(monkeypatch):
    monkeypatch.setenv("STASHFLOW_TASKS_DEFAULT_NO_CACHE", "true")

    @task
    def unnamed():
        return 1

    @task(cache_policy=INPUTS)
    def named():
        return 1

    assert unnamed.cache_policy is NO_CACHE
    assert named.cache_policy is INPUTS
    monkeypatch.delenv("STASHFLOW_TASKS_DEFAULT_NO_CACHE")
    assert unnamed.cache_policy == DEFAULT


def test_a_default_storage_block_turns_persistence_on(monkeypatch, tmp_path, files):
    from stashflow.filesystems import LocalFileSystem

    @task
    def plain():
        return 1

    @task(persist_result=False)
    def never():
        return 2

    assert plain.persist_result is None  # as in Prefect: undecided, the settings decide
    plain()
    assert files(tmp_path / "results") == []
    LocalFileSystem(basepath=str(tmp_path / "results")).save("results")
    monkeypatch.setenv("STASHFLOW_DEFAULT_RESULT_STORAGE_BLOCK", "local-file-system/results")
    plain()
    never()
    assert len(files(tmp_path / "results")) == 1


# -- the modules Prefect users import ---------------------------------------------------------


def test_prefect_import_paths_resolve():
    from stashflow.cache_policies import INPUTS as inputs_again
    from stashflow.context import FlowRunContext, TaskRunContext, get_run_context
    from stashflow.filesystems import LocalFileSystem
    from stashflow.flows import Flow
    from stashflow.flows import flow as flow_again
    from stashflow.locking.memory import MemoryLockManager
    from stashflow.tasks import Task, exponential_backoff, task_input_hash
    from stashflow.tasks import task as task_again
    from stashflow.transactions import IsolationLevel as Iso
    from stashflow.transactions import transaction as txn

    assert task_again is task and flow_again is flow and inputs_again is INPUTS
    assert isinstance(task(lambda: 1), Task) and isinstance(flow(lambda: 1), Flow)
    assert callable(exponential_backoff(1)) and callable(task_input_hash) and callable(txn)
    assert Iso.SERIALIZABLE == "SERIALIZABLE" and MemoryLockManager and LocalFileSystem
    assert FlowRunContext and TaskRunContext and get_run_context


def test_a_storage_class_that_is_not_installed_is_an_attribute_error_naming_the_installed():
    import stashflow.filesystems as filesystems

    with pytest.raises(AttributeError, match=r"no installed storage plugin.*LocalFileSystem"):
        filesystems.NoSuchFileSystem  # noqa: B018
    assert "LocalFileSystem" in dir(filesystems)


# -- futures inside objects ------------------------------------------------------------------


def test_futures_inside_dataclasses_namedtuples_and_models_are_resolved_for_the_task():
    import dataclasses
    from typing import NamedTuple

    import pydantic

    @dataclasses.dataclass(frozen=True)
    class Pair:
        a: object
        b: int = 0

    class Point(NamedTuple):
        x: object
        y: int

    class Model(pydantic.BaseModel):
        value: object

    @task
    def get(v):
        return v

    @task
    def show(pair, point, model, untouched):
        return pair, point, model, untouched

    plain = Pair(1, 2)

    @flow
    def f():
        return show(Pair(get.submit(10), 1), Point(get.submit(20), 2),
                    Model(value=get.submit(30)), plain)

    pair, point, model, untouched = f()
    assert pair == Pair(10, 1) and point == Point(20, 2) and model.value == 30
    assert untouched is plain  # nothing to resolve: the same object


# -- json results read back into the annotated type ------------------------------------------


@dataclasses.dataclass
class Row:
    id: int
    raw: bytes


class Report(pydantic.BaseModel):  # at module level: a string annotation must resolve
    day: str
    rows: list[int]


def test_a_cached_json_result_is_revived_into_the_dataclass_or_model_the_task_returns():
    bodies = []

    @task(persist_result=True, cache_policy=INPUTS, result_serializer="json")
    def rows(n) -> list[Row]:
        bodies.append(n)
        return [Row(i, b"\x00") for i in range(n)]

    @task(persist_result=True, cache_policy=INPUTS, result_serializer="json")
    def report(day) -> Report | None:
        bodies.append(day)
        return Report(day=day, rows=[1, 2])

    @task(persist_result=True, cache_policy=INPUTS, result_serializer="json")
    def unannotated(day):
        return Report(day=day, rows=[3])

    assert rows(2) == rows(2) == [Row(0, b"\x00"), Row(1, b"\x00")]
    assert report("mon") == report("mon") == Report(day="mon", rows=[1, 2])
    assert bodies == [2, "mon"]  # the second calls were cache hits
    unannotated("tue")
    assert unannotated("tue") == {"day": "tue", "rows": [3]}  # no annotation: its fields


def test_cache_policies_take_prefects_calling_convention():
    from stashflow.cache_policies import FLOW_PARAMETERS, RUN_ID, TASK_SOURCE

    assert INPUTS.compute_key(task_ctx=None, inputs={"x": 1}, flow_parameters=None) == \
        INPUTS.compute_key(None, {"x": 1}, None, extra="ignored")
    assert INPUTS.compute_key(task_ctx=None, inputs=None, flow_parameters=None) == \
        INPUTS.compute_key(None, {}, None)
    for policy in (TASK_SOURCE, RUN_ID, NO_CACHE):
        assert policy.compute_key(task_ctx=None, inputs={}, flow_parameters=None) is None
    assert FLOW_PARAMETERS.compute_key(None, {}, {"a": 1}) is not None
    assert (INPUTS + TASK_SOURCE).compute_key(task_ctx=None, inputs={"x": 1},
                                              flow_parameters=None) is not None


def test_the_run_context_shows_the_result_store_in_use(tmp_path):
    from stashflow.context import get_run_context
    from stashflow.filesystems import LocalFileSystem

    storage = LocalFileSystem(basepath=str(tmp_path / "custom"))

    @task(persist_result=True)
    def inner():
        context = get_run_context()
        return context.result_store.storage, context.persist_result

    @flow(result_storage=storage, persist_result=True)
    def outer():
        context = get_run_context()
        return context.result_store.storage, context.persist_result, inner()

    flow_storage, flow_persists, (task_storage, task_persists) = outer()
    assert flow_storage == storage == task_storage  # the task inherits the flow's storage
    assert flow_persists and task_persists
