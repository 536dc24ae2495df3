"""Transactions: staging, commit and rollback, hooks, nesting, and SERIALIZABLE runs-once."""

from __future__ import annotations

import contextvars
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from stashflow import ResultStore
from stashflow.exceptions import (
    InvalidResultKey,
    LockManagerNotFound,
    ResultCorrupted,
)
from stashflow.locking import MemoryLockManager, StorageLockManager
from stashflow.transactions import (
    CommitMode,
    IsolationLevel,
    Transaction,
    TransactionState,
    atransaction,
    get_transaction,
    transaction,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "concepts" / "transactions.md"


@pytest.fixture
def store(tmp_path) -> ResultStore:
    return ResultStore(tmp_path / "results")


def _append(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def _runs(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# -- commit and rollback ----------------------------------------------------------------


def test_commit_runs_the_commit_hooks_then_writes_the_staged_value(store):
    seen = []
    with transaction("answer", store) as txn:
        assert get_transaction() is txn
        assert not txn.is_committed() and txn.is_active()
        txn.stage(42, on_commit=lambda t: seen.append(("stage-hook", store.exists(t.key))))

        @txn.on_commit
        def after(t):
            seen.append(("decorated", t.is_committed()))

        assert txn.is_staged() and not txn.is_active() and not store.exists("answer")
    assert get_transaction() is None
    assert store.read("answer") == 42
    # as in Prefect: the hooks run before the record is written (a failing hook: no record)
    assert seen == [("stage-hook", False), ("decorated", False)]
    assert txn.is_committed() and not txn.is_staged() and not txn.is_rolled_back()


def test_a_keyed_transaction_records_its_commit_even_with_nothing_staged(store):
    with transaction("done-once", store) as first:
        assert not first.is_committed()
    assert store.exists("done-once") and store.read("done-once") is None
    with transaction("done-once", store) as second:
        assert second.is_committed()  # Prefect's idempotency pattern: return early
    with transaction("not-written", store, write_on_commit=False) as third:
        third.stage("value")
    assert third.is_committed() and not store.exists("not-written")


def test_an_exception_rolls_back_writes_nothing_runs_hooks_and_propagates(store):
    seen = []
    with pytest.raises(ZeroDivisionError), transaction("nothing", store) as txn:
        txn.stage("value", on_rollback=lambda t: seen.append(("stage-hook", t.key)))
        txn.on_rollback(lambda t: seen.append(("hook", t.is_rolled_back())))
        1 / 0  # noqa: B018
    assert not store.exists("nothing")
    assert list(store.list()) == []
    assert seen == [("hook", True), ("stage-hook", "nothing")]  # newest first
    assert txn.is_rolled_back() and not txn.is_committed()


def test_a_failing_write_rolls_back_and_is_logged_not_raised(store, caplog):
    seen = []
    with transaction("bad", store) as txn:
        txn.stage(lambda: "pickle cannot do this", on_rollback=seen.append)
    assert seen == [txn] and txn.is_rolled_back()
    assert not store.exists("bad")
    assert "could not be serialized" in caplog.text


def test_explicit_rollback_inside_the_block_discards_the_value(store):
    with transaction("undone", store) as txn:
        txn.stage(1)
        assert txn.rollback() is True
        assert txn.rollback() is False
    assert not store.exists("undone")


def test_is_committed_reflects_a_valid_record_unless_overwriting(store):
    store.write("present", "old")
    store.write("expired", "old", expiration=timedelta(seconds=-1))
    with transaction("present", store) as txn:
        assert txn.is_committed()
        assert txn.read() == "old"
        txn.stage("ignored: the committed record wins")
    assert store.read("present") == "old"
    with transaction("expired", store) as txn:
        assert not txn.is_committed()
        txn.stage("fresh")
    assert store.read("expired") == "fresh"
    with transaction("present", store, overwrite=True) as txn:
        assert not txn.is_committed()
        txn.stage("new")
    assert store.read("present") == "new"


def test_expiration_is_written_into_the_record(store):
    with transaction("short-lived", store, expiration=timedelta(hours=1)) as txn:
        txn.stage(1)
    meta = store.read_metadata("short-lived")
    assert meta.expiration is not None and not meta.is_expired()


def test_store_defaults_to_the_parents_then_to_the_default_storage(stashflow_home, store):
    with transaction("from-default") as txn:
        txn.stage("d")
    assert ResultStore().read("from-default") == "d"
    assert (stashflow_home / "storage" / "from-default").is_file()
    with transaction("outer", store), transaction("inner") as inner:
        assert inner.store is store
        inner.stage("i")
    assert store.read("inner") == "i"


def test_bad_arguments_are_refused_before_anything_happens(store):
    with pytest.raises(InvalidResultKey):
        transaction("../escape", store)
    with pytest.raises(ValueError, match="isolation level"):
        transaction("k", store, isolation_level="REPEATABLE_READ")
    with pytest.raises(ValueError, match="lease"):
        transaction("k", store, lease=-1)
    with pytest.raises(LockManagerNotFound, match="redis"), \
            transaction("k", store, isolation_level="SERIALIZABLE", lock_manager="redis"):
        pass
    assert get_transaction() is None
    txn = transaction("k", store)
    with txn:
        pass
    with pytest.raises(RuntimeError, match="once"), txn:
        pass


# -- nesting ----------------------------------------------------------------------------


def test_a_child_commit_waits_for_the_outermost_parent(store):
    order = []
    with transaction("parent", store) as parent:
        with transaction("child", store) as child:
            assert child.parent is parent and get_transaction() is child
            child.stage("c", on_commit=lambda t: order.append("child"))
        assert get_transaction() is parent
        assert not store.exists("child") and not child.is_committed()
        parent.stage("p", on_commit=lambda t: order.append("parent"))
    assert store.read("child") == "c" and store.read("parent") == "p"
    assert order == ["child", "parent"]


def test_a_parent_rollback_rolls_back_its_finished_children(store):
    order = []
    with pytest.raises(RuntimeError, match="late failure"), transaction("parent", store) as p:
        p.on_rollback(lambda t: order.append("parent"))
        with transaction("first", store) as first:
            first.stage(1, on_rollback=lambda t: order.append("first"))
        with transaction(None) as second:  # no key: grouping only
            second.on_rollback(lambda t: order.append("second"))
        raise RuntimeError("late failure")
    assert order == ["parent", "second", "first"]  # its own hooks, then children newest first
    assert list(store.list()) == []
    assert first.is_rolled_back() and second.is_rolled_back()


def test_a_failing_child_rolls_its_parents_back(store):
    order = []
    with transaction("parent", store) as parent:
        parent.on_rollback(lambda t: order.append("parent"))
        with transaction("sibling", store) as sibling:
            sibling.stage("staged before", on_rollback=lambda t: order.append("sibling"))
        with pytest.raises(KeyError), transaction("child", store) as child:
            child.stage("never")
            raise KeyError("child failed")
        assert parent.is_rolled_back()  # as in Prefect: the failure is the whole tree's
    assert order == ["parent", "sibling"]
    assert list(store.list()) == [] and child.is_rolled_back()


def test_children_see_their_parents_values(store):
    with transaction() as outer:
        outer.set("run", "r1")
        with transaction() as inner:
            assert inner.get("run") == "r1"
            inner.set("run", "r2")
            inner.set("only-inner", 1)
            assert inner.get("run") == "r2"
            outer.set("late", True)
            assert inner.get("late") is True
        assert outer.get("run") == "r1"
        assert outer.get("only-inner", "absent") == "absent"


def test_a_keyless_transaction_only_groups_hooks():
    seen = []
    with transaction() as txn:
        assert txn.key is None and txn.store is None
        txn.on_commit(lambda t: seen.append("commit"))
        assert not txn.is_committed()
    assert seen == ["commit"] and txn.is_committed()


def test_a_sibling_on_the_same_key_reads_the_pending_value(store):
    runs = []
    with transaction("group", store, isolation_level="SERIALIZABLE"):
        for _ in range(2):
            with transaction("same", store, isolation_level="SERIALIZABLE") as txn:
                if txn.is_committed():
                    value = txn.read()
                else:
                    runs.append(1)
                    value = "computed"
                    txn.stage(value)
            assert value == "computed"
        assert not store.exists("same")
        with transaction("group", store, isolation_level="SERIALIZABLE") as same_as_parent:
            same_as_parent.stage("nested on the parent's own key does not deadlock")
    assert runs == [1] and store.read("same") == "computed"


def test_locks_of_a_tree_are_released_only_after_all_its_records_are_written(store):
    manager = MemoryLockManager(store.storage)
    held_when_written = []
    with transaction("tree", store):
        with transaction("k", store, isolation_level="SERIALIZABLE", lock_manager=manager):
            pass  # holds the lock of k for the tree, stages nothing
        with transaction("k", store, isolation_level="SERIALIZABLE",
                         lock_manager=manager) as second:
            assert second.lock_manager is None  # the tree already holds the lock
            second.stage("v", on_commit=lambda t: held_when_written.append(
                manager.is_locked("k")))
        assert manager.is_locked("k") and not store.exists("k")
    assert held_when_written == [True] and store.read("k") == "v"
    assert not manager.is_locked("k")


def test_threads_of_one_tree_with_the_same_key_run_the_body_once(store):
    runs = []

    def child():
        with transaction("shared", store, isolation_level="SERIALIZABLE") as txn:
            if txn.is_committed():
                return txn.read()
            runs.append(threading.get_ident())
            time.sleep(0.2)
            txn.stage("v")
            return "v"

    results = []
    with transaction("flow", store):
        contexts = [contextvars.copy_context() for _ in range(4)]  # as the task runner does
        threads = [threading.Thread(target=lambda ctx=ctx: results.append(ctx.run(child)))
                   for ctx in contexts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert results == ["v"] * 4 and len(runs) == 1
    assert store.read("shared") == "v"


# -- SERIALIZABLE: the body runs once ---------------------------------------------------


def _once(key: str, store: ResultStore, counter: Path, **options) -> object:
    with transaction(key, store, isolation_level="SERIALIZABLE", **options) as txn:
        if txn.is_committed():
            return txn.read()
        _append(counter, f"{os.getpid()}:{threading.get_ident()}")
        time.sleep(0.2)
        value = {"key": key, "answer": 42}
        txn.stage(value)
        return value


@pytest.mark.parametrize("storage, lock_manager", [
    ("memory", None), ("memory", "storage"), ("local", None), ("local", "storage"),
])
def test_serializable_threads_run_the_body_once(tmp_path, storage, lock_manager):
    store = ResultStore(f"memory://{uuid.uuid4().hex}" if storage == "memory"
                        else tmp_path / "results")
    counter = tmp_path / "runs"
    barrier = threading.Barrier(8)
    results = []

    def worker():
        barrier.wait()
        results.append(_once("k", store, counter, lock_manager=lock_manager))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(_runs(counter)) == 1
    assert results == [{"key": "k", "answer": 42}] * 8
    assert store.read("k") == {"key": "k", "answer": 42}


RUN_ONCE = """
import os, sys, time
from stashflow import ResultStore
from stashflow.transactions import transaction
root, counter, go, key, manager = sys.argv[1:6]
store = ResultStore(root)
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.002)
with transaction(key, store, isolation_level="SERIALIZABLE",
                 lock_manager=None if manager == "default" else manager) as txn:
    if txn.is_committed():
        value = txn.read()
    else:
        fd = os.open(counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{os.getpid()}:process\\n".encode())
        os.close(fd)
        time.sleep(0.2)
        value = {"key": key, "answer": 42}
        txn.stage(value)
print(repr(value), flush=True)
"""


@pytest.mark.parametrize("lock_manager", [None, "storage"])
def test_serializable_threads_and_processes_run_the_body_once(tmp_path, lock_manager):
    root = tmp_path / "results"
    store = ResultStore(root)
    counter, go = tmp_path / "runs", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", RUN_ONCE, str(root), str(counter), str(go),
                               "k", lock_manager or "default"], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    start = threading.Event()
    results = []

    def worker():
        start.wait()
        results.append(_once("k", store, counter, lock_manager=lock_manager))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    go.touch()
    start.set()
    for t in threads:
        t.join(30)
    outputs = [proc.communicate(timeout=30)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert len(_runs(counter)) == 1, _runs(counter)
    assert outputs == [repr({"key": "k", "answer": 42})] * 2
    assert results == [{"key": "k", "answer": 42}] * 8
    assert store.read("k") == {"key": "k", "answer": 42}


def test_a_body_longer_than_the_lease_keeps_its_lock(store, tmp_path):
    counter = tmp_path / "runs"

    def slow():
        with transaction("slow", store, isolation_level="SERIALIZABLE", lease=0.3) as txn:
            if txn.is_committed():
                return
            _append(counter, "run")
            time.sleep(1.0)  # more than three leases: the keepalive renews it
            txn.stage("done")

    threads = [threading.Thread(target=slow) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert _runs(counter) == ["run"]


def test_serializable_with_an_explicit_lock_manager_instance(store):
    manager = MemoryLockManager(store.storage)
    with transaction("k", store, isolation_level="SERIALIZABLE", lock_manager=manager) as txn:
        assert txn.lock_manager is manager
        assert manager.is_lock_holder("k", txn.holder)
        txn.stage(1)
    assert not manager.is_locked("k")


def test_a_transaction_whose_lock_was_taken_over_warns_and_still_commits(store, caplog):
    with transaction("k", store, isolation_level="SERIALIZABLE", lock_manager="storage") as txn:
        # Someone else takes the lock over, as a breaker would after a lapsed lease:
        # the next generation of the documented layout .stashflow/locks/<digest>/<n>.
        [record] = store.storage.list(".stashflow/locks/")
        head, _, number = record.rpartition("/")
        taken = f'{{"holder": "intruder", "expires": {time.time() + 60}}}'.encode()
        assert store.storage.create(f"{head}/{int(number) + 1:012d}", taken)
        assert not txn.lock_manager.is_lock_holder("k", txn.holder)
        txn.stage("still written")
    assert "another caller may have run concurrently" in caplog.text
    assert store.read("k") == "still written"


def test_a_record_found_under_the_lock_releases_it_once_read(store):
    store.write("there", 1)
    with transaction("there", store, isolation_level="SERIALIZABLE") as txn:
        assert txn.is_committed()
        assert txn.lock_manager.is_locked("there")  # until the record proves readable
        assert txn.read() == 1
        assert not txn.lock_manager.is_locked("there")


def test_an_unusable_record_found_under_the_lock_is_repaired_under_it(store):
    store.write("there", 1)
    store.storage.write("there", store.storage.read("there")[:-1] + b"!")  # payload damaged
    with transaction("there", store, isolation_level="SERIALIZABLE") as txn:
        assert txn.is_committed()  # the header is sound
        with pytest.raises(ResultCorrupted):
            txn.read()
        assert not txn.is_committed()
        assert txn.lock_manager.is_locked("there")
        txn.stage(2)
    assert store.read("there") == 2


HOLD_IN_TRANSACTION = """
import sys, time
from stashflow import ResultStore
from stashflow.transactions import transaction
root, manager, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
with transaction("k", ResultStore(root), isolation_level="SERIALIZABLE",
                 lock_manager=manager, lease=lease) as txn:
    print("holding", flush=True)
    time.sleep(60)
    txn.stage("from the child")
"""


def _holding_child(root: Path, manager: str, lease: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD_IN_TRANSACTION, str(root), manager,
                             str(lease)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_a_killed_holder_delays_the_others_at_most_its_lease(tmp_path):
    root = tmp_path / "results"
    store = ResultStore(root)
    proc = _holding_child(root, "storage", 1.5)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    dead = time.monotonic()
    with transaction("k", store, isolation_level="SERIALIZABLE", lock_manager="storage") as txn:
        waited = time.monotonic() - dead
        assert not txn.is_committed()
        txn.stage("from the survivor")
    assert waited <= 1.5 + 0.3
    assert store.read("k") == "from the survivor"


def test_a_frozen_holder_delays_the_others_at_most_its_lease(tmp_path):
    root = tmp_path / "results"
    store = ResultStore(root)
    proc = _holding_child(root, "file", 1.0)
    try:
        proc.send_signal(signal.SIGSTOP)  # alive, holding the flock, its keepalive frozen too
        start = time.monotonic()
        with transaction("k", store, isolation_level="SERIALIZABLE", lock_manager="file",
                         lease=1.0) as txn:
            waited = time.monotonic() - start
            txn.stage("from the survivor")
        assert waited <= 1.0 + 0.5
        assert store.read("k") == "from the survivor"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()


def test_lock_names_of_similar_keys_do_not_collide_in_transactions(store):
    manager = StorageLockManager(store.storage)
    with transaction("a.v1", store, isolation_level="SERIALIZABLE", lock_manager=manager):
        done = []

        def other():
            with transaction("a.v2", store, isolation_level="SERIALIZABLE",
                             lock_manager=manager) as txn:
                txn.stage(2)
            done.append(True)

        t = threading.Thread(target=other)
        t.start()
        t.join(5)
        assert done == [True]


# -- docs -------------------------------------------------------------------------------


def test_the_docs_page_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(textwrap.dedent(block), str(DOCS), "exec"), {"__name__": "__docs__"})


def test_transaction_is_exported_from_the_package():
    import stashflow

    assert stashflow.transaction is transaction
    assert isinstance(transaction(), Transaction)


# -- Prefect's semantics: commit modes, values, parents, async ------------------------------


def test_commit_modes_eager_lazy_and_off(store):
    with transaction(store=store) as root:
        with transaction("eager", store, commit_mode="EAGER") as eager:
            eager.stage(1)
        assert store.read("eager") == 1 and eager.is_committed()  # at its own end
        with transaction("lazy", store, commit_mode=CommitMode.LAZY) as lazy:
            lazy.stage(2)
        assert not store.exists("lazy") and lazy.is_staged()  # when the outermost commits
    assert store.read("lazy") == 2 and root.is_committed()
    with transaction("off", store, commit_mode=CommitMode.OFF) as off:
        off.stage(3)
    assert off.is_rolled_back() and not store.exists("off")
    with transaction(store=store, commit_mode="EAGER") as parent:
        with transaction("inherits", store) as child:  # a child takes its parent's mode
            child.stage(4)
        assert child.commit_mode == CommitMode.EAGER and store.read("inherits") == 4
    with pytest.raises(ValueError, match="commit mode"):
        transaction("x", store, commit_mode="SOMETIMES")
    assert parent.is_committed()


def test_values_are_copies_and_a_missing_one_is_an_error_unless_defaulted():
    with transaction() as parent:
        parent.set("rows", [1, 2, 3])
        with transaction() as child:
            assert child.get_parent() is parent and parent.get_parent() is None
            rows = child.get("rows")
            rows.append(4)
            assert child.get("rows") == [1, 2, 3]  # the stored value did not change
            child.set("rows", rows)
            assert child.get("rows") == [1, 2, 3, 4] and parent.get("rows") == [1, 2, 3]
            assert child.get("missing", default=None) is None
            with pytest.raises(ValueError, match="'missing'"):
                child.get("missing")


def test_states_pending_active_staged_committed():
    txn = transaction()
    assert txn.is_pending() and not txn.is_active() and txn.state == "PENDING"
    with txn:
        assert txn.is_active() and not txn.is_pending()
        txn.stage("v")
        assert txn.is_staged() and not txn.is_active()
    assert txn.is_committed() and txn.state == TransactionState.COMMITTED


def test_isolation_levels_are_an_enum_also_spelled_as_strings(store):
    with transaction("k", store, isolation_level=IsolationLevel.SERIALIZABLE) as a:
        assert a.isolation_level == "SERIALIZABLE" and a.lock_manager is not None
        with transaction("j", store) as b:  # inherits the parent's level
            assert b.isolation_level is IsolationLevel.SERIALIZABLE


def test_coroutine_hooks_are_awaited_in_a_sync_transaction(store):
    import asyncio

    seen = []

    async def on_commit(txn):
        await asyncio.sleep(0)
        seen.append(("commit", txn.key))

    async def on_rollback(txn):
        await asyncio.sleep(0)
        seen.append(("rollback", txn.key))

    with transaction("a", store) as txn:
        txn.stage(1, on_commit=on_commit)
    with pytest.raises(RuntimeError), transaction("b", store) as txn:
        txn.stage(2, on_rollback=on_rollback)
        raise RuntimeError("boom")
    assert seen == [("commit", "a"), ("rollback", "b")]


def test_an_async_transaction_commits_rolls_back_and_awaits_its_hooks(store):
    import asyncio

    seen = []

    async def hook(txn):
        await asyncio.sleep(0)
        seen.append(txn.key)

    async def main():
        async with atransaction("async-k", store) as txn:
            assert get_transaction() is txn and not txn.is_committed()
            txn.stage({"v": 1}, on_commit=hook)
        assert store.read("async-k") == {"v": 1}
        async with atransaction("async-k", store) as again:
            assert again.is_committed() and await again.read() == {"v": 1}
        with pytest.raises(KeyError):
            async with atransaction("failed", store) as failed:
                failed.stage(2, on_rollback=hook)
                raise KeyError("x")
        assert failed.is_rolled_back() and not store.exists("failed")
        async with atransaction("locked", store, isolation_level="SERIALIZABLE") as locked:
            assert locked.lock_manager.is_locked("locked")
            locked.stage(3)
        assert not locked.lock_manager.is_locked("locked")

    asyncio.run(main())
    assert seen == ["async-k", "failed"]
    with pytest.raises(TypeError, match="async with"), atransaction("x", store):
        pass
