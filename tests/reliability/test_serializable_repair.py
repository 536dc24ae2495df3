"""SERIALIZABLE keeps run-once through damage: N processes, one body run, one repaired record.

Each scenario first caches a value, then damages the record (or asks for a
refresh), then starts N processes that call the same SERIALIZABLE task at the
same moment. Exactly one of them must run the body and rewrite the record; the
others must read the new record, not run the body and not fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from stashflow import ResultStore

PROCESSES = 4

WORKER = textwrap.dedent("""
    import json, os, sys, time, warnings
    from pathlib import Path

    from stashflow import task
    from stashflow.cache_policies import INPUTS

    root, counter, go, refresh = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"

    @task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"), result_storage=root,
          result_storage_key="shared/answer", refresh_cache=refresh, cache_expiration=3600)
    def answer(x):
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(0.3)  # long enough for every other process to be waiting on the lock
        return {"x": x, "by": os.getpid()}

    while not os.path.exists(go):
        time.sleep(0.005)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        value = answer(7)
    print(json.dumps(value))
""")


def _damage_payload(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))


def _sign_with_another_key(path: Path) -> None:
    ResultStore(path.parent.parent, signing_key="a key we no longer use").write(
        "shared/answer", {"x": 7, "by": "old"})


def _make_undecodable(path: Path) -> None:
    class Raw:  # an intact, signed-as-configured record whose pickle cannot be loaded
        pass

    store = ResultStore(path.parent.parent)
    from stashflow.serializers import Serializer

    class Bytes(Serializer):
        type = "pickle"

        def dumps(self, obj):
            return b"cno_such_module_for_stashflow\nThing\n."

    ResultStore(path.parent.parent, Bytes(), signing_key=store._signing_key).write(
        "shared/answer", Raw())


def _expire(path: Path) -> None:
    ResultStore(path.parent.parent).write("shared/answer", {"x": 7, "by": "old"}, expiration=-1)


SCENARIOS = {
    "corrupt payload": (_damage_payload, False),
    "signed with a rotated key": (_sign_with_another_key, False),
    "undecodable": (_make_undecodable, False),
    "expired": (_expire, False),
    "refresh_cache": (lambda path: None, True),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_n_concurrent_serializable_runs_after_damage_run_the_body_once(scenario, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("STASHFLOW_RESULTS_SIGNING_KEY", "the current key")
    damage, refresh = SCENARIOS[scenario]
    root, counter, go = tmp_path / "results", tmp_path / "count", tmp_path / "go"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ResultStore(root).write("shared/answer", {"x": 7, "by": "seed"})
    damage(root / "shared" / "answer")

    procs = [subprocess.Popen([sys.executable, str(script), str(root), str(counter), str(go),
                               "1" if refresh else "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
             for _ in range(PROCESSES)]
    time.sleep(1.0)  # every process imported stashflow and waits for the go
    go.touch()
    values = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        values.append(json.loads(out))

    runs = counter.read_text().split()
    assert len(runs) == 1, f"{scenario}: the body ran {len(runs)} times"
    assert all(v == {"x": 7, "by": int(runs[0])} for v in values)
    assert ResultStore(root).read("shared/answer") == {"x": 7, "by": int(runs[0])}
