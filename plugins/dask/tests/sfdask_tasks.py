"""Tasks for the Dask tests: a module the worker processes can import (the tests dir is on their path).

Every body appends one line to the file at `log` (O_APPEND, so lines from
concurrent processes never mix): the tests count executions from it. `log` is
left out of the cache key.
"""

from __future__ import annotations

import os
import pickle
import time

from stashflow import task
from stashflow.cache_policies import INPUTS, TASK_SOURCE
from stashflow.serializers import Serializer

BY_INPUTS = INPUTS - "log" + TASK_SOURCE  # the same key from any run, process or cluster


def note(log: str, line: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def lines(log: str) -> list[str]:
    try:
        with open(log) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


@task(cache_policy=BY_INPUTS)
def square(x: int, log: str) -> tuple[int, int]:
    """x*x and the pid of the process that computed it."""
    note(log, f"square {x} {os.getpid()}")
    return x * x, os.getpid()


@task(cache_policy=BY_INPUTS)
def add(a: int, b: int, log: str) -> int:
    note(log, f"add {a} {b}")
    return a + b


@task(cache_policy=BY_INPUTS)
def total(values: list, extra: dict, log: str) -> int:
    note(log, "total")
    return sum(values) + sum(extra.values())


@task(cache_policy=BY_INPUTS.configure(isolation_level="SERIALIZABLE"))
def slow_once(x: int, log: str, seconds: float = 0.5) -> int:
    """Sleeps while holding the key's lock: concurrent callers of one key must wait for it."""
    note(log, f"slow_once {x} {os.getpid()}")
    time.sleep(seconds)
    return x * 10


def first_time(marker: str) -> bool:
    """True for the first caller of all processes (creates `marker` exclusively)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


@task(cache_policy=(INPUTS - "log" - "marker" + TASK_SOURCE).configure(
    isolation_level="SERIALIZABLE"))
def hold_once(x: int, log: str, marker: str) -> int:
    """Like slow_once, but the first execution ever holds the lock a minute (to be killed)."""
    note(log, f"hold_once {x} {os.getpid()}")
    time.sleep(60 if first_time(marker) else 0.2)
    return x * 10


@task
def fail(x: int) -> None:
    raise ValueError(f"bad input {x}")


@task
def pid() -> int:
    return os.getpid()


class PausingPickle(Serializer):
    """pickle, streamed: writes half a record, notes "writing PID" in `log`, and the first
    time (per `marker` file) pauses `pause` seconds before the rest - time to be killed."""

    type = "test/pausing-pickle"
    streaming = True

    def __init__(self, log: str, marker: str, pause: float = 60.0):
        self.log, self.marker, self.pause = log, marker, pause

    def dumps(self, obj):
        return pickle.dumps(obj)

    def loads(self, data):
        return pickle.loads(data)

    def dump(self, obj, file) -> None:
        data = pickle.dumps(obj)
        half = len(data) // 2
        file.write(data[:half])
        first = first_time(self.marker)
        note(self.log, f"writing {os.getpid()}")
        if first:
            time.sleep(self.pause)
        file.write(data[half:])


@task(cache_policy=BY_INPUTS)
def big(n: int, log: str) -> bytes:
    note(log, f"big {n} {os.getpid()}")
    return bytes(range(256)) * n


def registry_here() -> tuple[list[str], list[str], str]:
    """(storage types, task runners, STASHFLOW_HOME) as this process's plugins registered them."""
    from stashflow.registry import get_registry

    registry = get_registry()
    return sorted(registry.storage_types), sorted(registry.task_runners), os.environ["STASHFLOW_HOME"]
