"""Tasks under transactions: SERIALIZABLE runs the body once; nesting defers the write."""

import os
import subprocess
import sys
import textwrap
import threading

from stashflow import ResultStore, flow, task, transaction
from stashflow.cache_policies import INPUTS

SCRIPT = """
    import sys, threading, time
    from pathlib import Path
    from stashflow import task
    from stashflow.cache_policies import INPUTS

    COUNTER = Path(sys.argv[1])
    START = float(sys.argv[2])

    @task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"))
    def expensive(x):
        with COUNTER.open("a") as f:
            f.write("ran\\n")
        time.sleep(0.3)
        return x * 10

    while time.time() < START:
        time.sleep(0.005)
    out = []
    threads = [threading.Thread(target=lambda: out.append(expensive(7, return_state=True)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(sorted(s.name for s in out), sorted(s.result() for s in out))
"""


def test_serializable_policy_runs_the_body_once_across_threads(tmp_path, storage_root):
    calls = []
    gate = threading.Barrier(8)

    @task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"))
    def expensive(x):
        calls.append(x)
        return {"x": x}

    states = []

    def call():
        gate.wait()
        states.append(expensive(3, return_state=True))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [3]
    assert sorted(s.name for s in states) == ["Cached"] * 7 + ["Completed"]
    assert all(s.result() == {"x": 3} for s in states)


def test_serializable_policy_runs_the_body_once_across_processes(tmp_path, storage_root):
    import time

    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(SCRIPT))
    counter = tmp_path / "counter"
    start = str(time.time() + 1.0)
    procs = [subprocess.Popen([sys.executable, str(script), str(counter), start],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ)) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert counter.read_text() == "ran\n"
    names = "".join(out for out, _ in outputs)
    assert names.count("'Completed'") == 1 and names.count("'Cached'") == 7
    assert names.count("70") == 8


def test_task_in_a_rolled_back_transaction_writes_nothing(storage_root, files):
    @task(result_storage_key="inner")
    def inner():
        return 1

    try:
        with transaction():
            inner()
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    assert files(storage_root) == []


def test_task_in_a_committed_transaction_writes_on_commit(storage_root, files):
    committed = []

    @task(result_storage_key="inner", cache_result_in_memory=False)
    def inner():
        return [1, 2]

    @flow
    def f():
        with transaction() as txn:
            txn.on_commit(lambda t: committed.append(files(storage_root)))
            state = inner(return_state=True)
            assert files(storage_root) == []  # deferred to the outer commit
            assert state.result() == [1, 2]  # kept in memory until then
        return state

    state = f()
    assert committed == [["inner"]]
    assert ResultStore(storage_root).read("inner") == [1, 2] == state.result()
