"""create() is a real conditional PUT: of racers on one key, exactly one wins."""

from __future__ import annotations

import threading

import pytest
from stashflow import ResultStore
from stashflow.storage import record_keys
from stashflow_s3 import S3Bucket


def _race(n: int, attempt) -> list[bool]:
    barrier = threading.Barrier(n)
    results: list[bool] = [False] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = attempt(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return results


@pytest.mark.parametrize("round_", range(20))
def test_two_threads_racing_create_exactly_one_wins(backend, moto_endpoint, round_):
    # Separate block instances, as two workers would have.
    twins = [S3Bucket(**backend.field_values(reveal_secrets=True)) for _ in range(2)]
    key = f"lock-{round_}"
    results = _race(2, lambda i: twins[i].create(key, f"writer {i}".encode()))
    assert sorted(results) == [False, True]
    winner = results.index(True)
    assert backend.read(key) == f"writer {winner}".encode()


def test_result_store_create_race_many_threads(backend):
    store = ResultStore(backend)
    results = _race(8, lambda i: store.create("once", i))
    assert results.count(True) == 1
    assert store.read("once") == results.index(True)


def test_storage_locks_on_s3_exclude_each_other(backend):
    from stashflow.locking import StorageLockManager

    locks = StorageLockManager(backend, default_lease=30)
    assert locks.acquire("job", "worker-1", timeout=1)
    assert locks.is_locked("job")
    assert not locks.acquire("job", "worker-2", timeout=0.3)
    locks.release("job", "worker-1")
    assert locks.acquire("job", "worker-2", timeout=1)
    locks.release("job", "worker-2")
    assert list(record_keys(backend)) == []  # lock records stay out of the results' listing
