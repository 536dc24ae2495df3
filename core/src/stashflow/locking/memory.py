"""The "memory" lock manager: the threads of one process."""

from __future__ import annotations

import os
import time

from . import base
from .base import LockManager, NotLockHolder


class _MemoryLease:
    __slots__ = ("expires", "holder")

    def __init__(self, holder: str, expires: float):
        self.holder = holder
        self.expires = expires  # time.monotonic()


_memory_locks: dict[tuple[str, str], _MemoryLease] = {}


class MemoryLockManager(LockManager):
    """Locks for the threads of this process (a dict guarded by a condition variable).

    Every instance shares the one table of the process, so two managers on the same
    storage (or two made with no storage, `MemoryLockManager()`, as Prefect's users
    make its singleton) see each other's locks. A manager without storage locks bare
    keys: the same key is the same lock whatever store it is used with.
    """

    def _live(self, k: tuple[str, str]) -> _MemoryLease | None:
        current = _memory_locks.get(k)
        return current if current is not None and current.expires > time.monotonic() else None

    def acquire(self, key: str, holder: str, *, timeout: float | None = None,
                lease: float | None = None) -> bool:
        lease = self.lease_or_default(lease)
        deadline = base.deadline_after(timeout)
        k = (self.location, key)
        with base.wakeup:
            while True:
                current = self._live(k)
                if current is None or current.holder == holder:
                    _memory_locks[k] = _MemoryLease(holder, time.monotonic() + lease)
                    return True
                remaining = base.time_left(deadline)
                if remaining <= 0:
                    return False
                base.wakeup.wait(min(remaining, current.expires - time.monotonic() + 0.001))

    def release(self, key: str, holder: str) -> None:
        k = (self.location, key)
        with base.wakeup:
            current = _memory_locks.get(k)
            if current is None or current.holder != holder:
                raise NotLockHolder(key, holder, self)
            del _memory_locks[k]
            base.wakeup.notify_all()

    def renew(self, key: str, holder: str, *, lease: float | None = None) -> bool:
        lease = self.lease_or_default(lease)
        k = (self.location, key)
        with base.wakeup:
            current = _memory_locks.get(k)
            if current is None or current.holder != holder:
                return False
            current.expires = time.monotonic() + lease
            return True

    def is_locked(self, key: str) -> bool:
        with base.wakeup:
            return self._live((self.location, key)) is not None

    def is_lock_holder(self, key: str, holder: str) -> bool:
        with base.wakeup:
            current = self._live((self.location, key))
            return current is not None and current.holder == holder


def _forget_after_fork() -> None:
    _memory_locks.clear()  # a forked child holds none of its parent's locks


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
