"""Streams that misbehave on purpose, and calls run in threads: the parts of fault tests."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Any


class Exploding(io.RawIOBase):
    """A readable stream that fails after `good` bytes, like a producer that dies mid-value."""

    def __init__(self, good: int):
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.left <= 0:
            raise RuntimeError("the producer died")
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


class Gated(io.RawIOBase):
    """`first` bytes at once, then the rest of `total` only after `gate` is set: a slow
    producer. `waiting` is set once it waits at the gate."""

    def __init__(self, first: int, total: int, gate: threading.Event):
        self.first, self.left, self.gate = first, total, gate
        self.waiting = threading.Event()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.first <= 0 and not self.gate.is_set():
            self.waiting.set()
            self.gate.wait(30)
        n = min(len(buffer), self.left, self.first if self.first > 0 else len(buffer))
        buffer[:n] = b"n" * n
        self.left -= n
        self.first -= n
        return n


class Attempt(threading.Thread):
    """`call()` started in a thread of its own. After join(): `outcome` is what it
    raised, or None, and `value` what it returned."""

    def __init__(self, call: Callable[[], Any]):
        super().__init__(daemon=True)
        self.call = call
        self.outcome: BaseException | None = None
        self.value: Any = None
        self.start()

    def run(self) -> None:
        try:
            self.value = self.call()
        except BaseException as exc:
            self.outcome = exc


def race(n: int, call: Callable[[int], Any], timeout: float = 120) -> list[Any]:
    """call(i) in n threads released together; what each returned, by i (errors re-raised)."""
    barrier = threading.Barrier(n)
    attempts = [Attempt(lambda i=i: (barrier.wait(), call(i))[1]) for i in range(n)]
    for attempt in attempts:
        attempt.join(timeout)
    errors = [a.outcome for a in attempts if a.outcome is not None]
    assert not errors, errors
    return [a.value for a in attempts]
