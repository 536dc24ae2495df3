"""Two processes x four threads writing and reading the same 50 keys: no read is ever torn.

Every key holds a record before the workers start, so a read must return a
complete value that some writer wrote: a miss, a corrupt record or the bytes of
another key are all failures. (SERIALIZABLE caching across processes running
each body once is proven in core/tests/test_transactions.py:
test_serializable_threads_and_processes_run_the_body_once and
test_a_killed_holder_delays_the_others_at_most_its_lease.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import _concurrency_worker as worker
from stashflow.maintenance import temp_keys
from stashflow.results import ResultStore

WORKER = Path(__file__).with_name("_concurrency_worker.py")
PROCESSES, THREADS, SECONDS = 2, 4, 5.0


def test_concurrent_writers_and_readers_only_ever_see_whole_values_someone_wrote(tmp_path):
    root = tmp_path / "results"
    store = ResultStore(root)
    for key in worker.KEYS:
        store.write(key, worker.value(key, "seed", 0, 100))

    procs = [subprocess.Popen([sys.executable, str(WORKER), str(root), f"p{i}", str(SECONDS),
                               str(THREADS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(PROCESSES)]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=SECONDS + 60)
        assert proc.returncode == 0, err.decode()
        reports.append(json.loads(out))

    problems = [p for r in reports for p in r["problems"]]
    assert problems == []
    written = {tuple(w) for r in reports for w in r["written"]}
    written |= {(key, "seed", 0) for key in worker.KEYS}
    reads = [tuple(x) for r in reports for x in r["read"]]
    assert set(reads) <= written, "a read returned a value nobody wrote"
    # The run really was concurrent: both processes wrote and read plenty, and reads
    # saw the other process's writes.
    for r in reports:
        assert len(r["written"]) > 50 and len(r["read"]) > 50
    assert {w.split(".")[0] for _, w, _ in reads} >= {"p0", "p1"}
    # And what is left is 50 whole records, no temp files.
    assert sorted(store.list()) == worker.KEYS
    for key in worker.KEYS:
        assert worker.check(key, store.read(key)) is None
    assert list(temp_keys(store.storage)) == []
