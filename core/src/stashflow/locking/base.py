"""What every lock manager shares: the LockManager base, leases and their renewal.

A lock manager is bound to one storage backend and locks that backend's keys for
a *holder* (any string; transactions use a fresh one each). Every lock has a
*lease*: a holder that stops renewing (crashed, frozen, cut off) loses the lock
when the lease runs out, so it delays the others at most that long.
Transactions renew their lease from one background thread (`Keepalive`).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import math
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from ..durations import as_seconds
from ..exceptions import LockNotHeld, LockTimeout
from ..keys import RESERVED_PREFIX

DEFAULT_LEASE = 30.0
LOCKS_PREFIX = f"{RESERVED_PREFIX}/locks/"


class NotLockHolder(LockNotHeld, ValueError):
    """What `release` raises for a holder that does not hold the lock: a LockNotHeld
    that is also a ValueError, which is what Prefect's lock managers raise."""


async def _in_worker_thread(fn: Any, *args: Any) -> Any:
    """`fn(*args)` in a worker thread (asyncio.to_thread: the context goes along)."""
    import asyncio  # here, not at the top: most users of locks never await one

    return await asyncio.to_thread(fn, *args)


def log():
    import logging  # on first use: most runs never log

    return logging.getLogger("stashflow.locks")


# Wakes waiters of this process when a lock is released here, so a local hand-over
# does not wait for the next poll.
wakeup = threading.Condition()


def notify() -> None:
    with wakeup:
        wakeup.notify_all()


def wait(seconds: float) -> None:
    if seconds > 0:
        with wakeup:
            wakeup.wait(seconds)


def new_token() -> str:
    return os.urandom(16).hex()


def new_holder() -> str:
    """A unique holder name that also says where it comes from: host:pid:thread:random."""
    host = os.uname().nodename if hasattr(os, "uname") else "host"
    return f"{host}:{os.getpid()}:{threading.get_ident()}:{new_token()[:12]}"


def storage_location(storage: Any) -> str:
    """A string naming where a backend keeps its objects (its `location()`)."""
    return "" if storage is None else storage.location()


def lock_name(location: str, key: str) -> str:
    """The name of the lock of `key` at `location`: a digest, so `a.v1` and `a.v2` never meet."""
    from hashlib import sha256

    return sha256(f"{location}\0{key}".encode("utf-8", "surrogatepass")).hexdigest()[:40]


def lease_seconds(value: float, what: str = "lock lease") -> float:
    return as_seconds(value, what)


def deadline_after(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError(f"a lock timeout must be None or seconds >= 0, not {timeout!r}")
    return time.monotonic() + timeout


def time_left(deadline: float | None) -> float:
    return math.inf if deadline is None else deadline - time.monotonic()


class LockManager:
    """Locks on the keys of one storage backend, with leases.

    Subclasses implement `acquire`, `release`, `renew`, `is_locked` and
    `is_lock_holder`; `wait_for_lock` and `lock` are derived, and so are Prefect's
    names: `acquire_lock`, `release_lock`, and `aacquire_lock` / `await_for_lock`,
    which wait in a worker thread so that an event loop keeps running.
    """

    poll_interval: float = 0.05

    def __init__(self, storage: Any = None, *, default_lease: float = DEFAULT_LEASE,
                 poll_interval: float | None = None):
        self.storage = storage
        self.location = storage_location(storage)
        self.default_lease = lease_seconds(default_lease)
        if poll_interval is not None:
            self.poll_interval = lease_seconds(poll_interval, "poll interval")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location or 'no storage'})"

    def lease_or_default(self, lease: float | None) -> float:
        """`lease` checked, or this manager's default lease when None."""
        return self.default_lease if lease is None else lease_seconds(lease)

    def acquire(self, key: str, holder: str, *, timeout: float | None = None,
                lease: float | None = None) -> bool:
        """Take the lock of `key` for `holder`, waiting up to `timeout` seconds (None:
        as long as it takes). The lock lapses `lease` seconds after the last acquire or
        renew. Acquiring a lock one already holds renews it. False on timeout."""
        raise NotImplementedError

    def release(self, key: str, holder: str) -> None:
        """Give the lock back; LockNotHeld if `holder` does not hold it (any more)."""
        raise NotImplementedError

    def renew(self, key: str, holder: str, *, lease: float | None = None) -> bool:
        """Extend `holder`'s lease to `lease` seconds from now; False if it lost the lock."""
        raise NotImplementedError

    def is_locked(self, key: str) -> bool:
        """True if someone holds the lock of `key` and their lease has not run out."""
        raise NotImplementedError

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """True if `holder` holds the lock of `key` and its lease has not run out."""
        raise NotImplementedError

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until `key` is not locked; False if it still is after `timeout` seconds."""
        deadline = deadline_after(timeout)
        delay = 0.005
        while self.is_locked(key):
            remaining = time_left(deadline)
            if remaining <= 0:
                return False
            wait(min(delay, remaining))
            delay = min(delay * 2, self.poll_interval)
        return True

    # -- Prefect's names ---------------------------------------------------------------

    def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                     hold_timeout: float | None = None) -> bool:
        """`acquire` under Prefect's name: `acquire_timeout` is `timeout` and `hold_timeout`
        the lease (None: this manager's default lease, not forever: nothing renews it)."""
        return self.acquire(key, holder, timeout=acquire_timeout, lease=hold_timeout)

    def release_lock(self, key: str, holder: str) -> None:
        """`release` under Prefect's name (LockNotHeld, a ValueError, if not held)."""
        self.release(key, holder)

    async def aacquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                            hold_timeout: float | None = None) -> bool:
        """`acquire_lock` waiting in a worker thread. If the caller is cancelled while it
        waits, a lock the thread takes after all is given back, not left to its lease."""
        guard = threading.Lock()
        state = {"abandoned": False, "taken": False}

        def attempt() -> bool:
            taken = self.acquire_lock(key, holder, acquire_timeout, hold_timeout)
            with guard:
                state["taken"] = taken
                abandoned = state["abandoned"]
            if taken and abandoned:
                self._release_quietly(key, holder)
                return False
            return taken

        try:
            return await _in_worker_thread(attempt)
        except BaseException:
            with guard:
                state["abandoned"] = True
                taken = state["taken"]
            if taken:  # the thread took it just before the caller gave up
                self._release_quietly(key, holder)
            raise

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """`wait_for_lock` in a worker thread, so the event loop keeps running."""
        return await _in_worker_thread(self.wait_for_lock, key, timeout)

    def _release_quietly(self, key: str, holder: str) -> None:
        """Release if held; log instead of raising (for clean-up paths)."""
        try:
            self.release(key, holder)
        except Exception as exc:
            log().warning("could not give back the lock of %r: %s", key, exc)

    @contextlib.contextmanager
    def lock(self, key: str, holder: str | None = None, *, timeout: float | None = None,
             lease: float | None = None) -> Iterator[str]:
        """Hold the lock of `key` for the block, renewing the lease meanwhile.

        Yields the holder name; LockTimeout if the lock is not free within `timeout`.
        """
        holder = holder or new_holder()
        lease = self.lease_or_default(lease)
        if not self.acquire(key, holder, timeout=timeout, lease=lease):
            raise LockTimeout(key, timeout, self)
        keeper = Keepalive(self, key, holder, lease)
        try:
            yield holder
        finally:
            keeper.stop()
            self.release(key, holder)


class Keepalive:
    """Renews a held lock every third of its lease until stopped.

    All keepalives of a process share one daemon thread, so keeping a lock alive
    costs no thread of its own.
    """

    def __init__(self, manager: LockManager, key: str, holder: str, lease: float):
        self.manager, self.key, self.holder, self.lease = manager, key, holder, lease
        self.lost = False
        self.stopped = False
        self._mutex = threading.Lock()  # a renewal never runs after stop() returns
        _renewer().add(self)

    def _renew(self) -> bool:
        """One renewal; True to be scheduled again."""
        with self._mutex:
            if self.stopped:
                return False
            try:
                kept = self.manager.renew(self.key, self.holder, lease=self.lease)
            except Exception:
                log().exception("renewing the lock of %r failed; trying again", self.key)
                return True
            if not kept:
                self.lost = True
                log().warning("the lock of %r was lost: its lease (%.1f s) ran out and "
                               "another holder took it", self.key, self.lease)
            return kept

    def stop(self) -> None:
        with self._mutex:
            self.stopped = True


class _Renewer:
    """One daemon thread renewing every Keepalive of the process when it falls due."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, Keepalive]] = []
        self._count = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, keeper: Keepalive) -> None:
        with self._cond:
            heapq.heappush(self._due, (time.monotonic() + keeper.lease / 3, next(self._count),
                                       keeper))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="stashflow-lease-renewer")
                self._thread.start()
            self._cond.notify()

    def _next(self) -> Keepalive:
        with self._cond:
            while True:
                while self._due and self._due[0][2].stopped:
                    heapq.heappop(self._due)
                if not self._due:
                    self._cond.wait()
                    continue
                delay = self._due[0][0] - time.monotonic()
                if delay <= 0:
                    return heapq.heappop(self._due)[2]
                self._cond.wait(delay)

    def _run(self) -> None:
        while True:
            keeper = self._next()
            if keeper._renew():
                with self._cond:
                    heapq.heappush(self._due, (time.monotonic() + keeper.lease / 3,
                                               next(self._count), keeper))


_the_renewer: _Renewer | None = None
_renewer_lock = threading.Lock()


def _renewer() -> _Renewer:
    global _the_renewer
    if _the_renewer is None:
        with _renewer_lock:
            if _the_renewer is None:
                _the_renewer = _Renewer()
    return _the_renewer



# -- records shared by the file and storage managers -------------------------------------


def lease_record(key: str, holder: str, token: str, lease: float, released: bool = False) -> bytes:
    return json.dumps({
        "key": key, "holder": holder, "token": token, "expires": time.time() + lease,
        "released": released, "pid": os.getpid(),
    }).encode()


def parse_lease(data: bytes) -> dict | None:
    try:
        rec = json.loads(data)
    except ValueError:
        return None
    ok = (isinstance(rec, dict) and isinstance(rec.get("holder"), str)
          and isinstance(rec.get("expires"), (int, float)))
    return rec if ok else None


def lease_active(rec: dict | None) -> bool:
    return rec is not None and not rec.get("released") and rec["expires"] > time.time()




def _forget_after_fork() -> None:
    """A forked child holds none of its parent's locks and has no renewer thread."""
    global wakeup, _the_renewer, _renewer_lock
    wakeup = threading.Condition()
    _the_renewer, _renewer_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
