"""The "storage" lock manager: any backend, any number of machines."""

from __future__ import annotations

import os
import threading
import time

from ..exceptions import LockError
from . import base
from .base import LOCKS_PREFIX, LockManager, NotLockHolder, lock_name

_storage_holds: dict[tuple[str, str, str], tuple[int, str]] = {}  # -> (generation, token)
_storage_holds_lock = threading.Lock()


class StorageLockManager(LockManager):
    """Locks kept in the result storage itself: works for any backend and any machine.

    The lock of a key is a series of small objects
    ``.stashflow/locks/<digest>/<generation>``, each a lease record. The lock is
    free when the highest generation is released or past its lease; taking it means
    creating the next generation with the backend's atomic create-if-absent, so of
    any number of contenders (including two breaking the same stale lock) exactly
    one wins. Objects are never overwritten by anyone but their creator, and the
    highest one is never deleted, so no one can clobber another holder's record.

    Limits: a holder paused past its lease can, until it next checks, believe it
    still holds a lock someone else has taken (no lease scheme avoids this without
    fencing tokens); leases compare wall clocks, so machines must agree on the time
    to well within a lease; and exclusion is only as good as the backend's
    `create` (atomic on local, memory, S3, GCS and Azure).
    """

    poll_interval = 0.25

    def _prefix(self, key: str) -> str:
        return f"{LOCKS_PREFIX}{lock_name(self.location, key)}/"

    def _generations(self, key: str) -> list[int]:
        prefix = self._prefix(key)
        gens = []
        for name in self.storage.list(prefix):
            tail = name[len(prefix):]
            if tail.isdigit():
                gens.append(int(tail))
        return sorted(gens)

    def _object(self, key: str, generation: int) -> str:
        return f"{self._prefix(key)}{generation:012d}"

    def _top(self, key: str) -> tuple[int, dict | None]:
        """The highest generation and its record (None if none, or unreadable)."""
        while True:
            gens = self._generations(key)
            if not gens:
                return 0, None
            try:
                data = self.storage.read(self._object(key, gens[-1]))
            except FileNotFoundError:
                continue  # a superseded generation was cleaned up meanwhile: look again
            return gens[-1], base.parse_lease(data)

    def _take(self, key: str, holder: str, generation: int, lease: float) -> bool:
        token = base.new_token()
        name = self._object(key, generation)
        if not self.storage.create(name, base.lease_record(key, holder, token, lease)):
            return False
        gens = self._generations(key)
        if generation not in gens:
            raise LockError(
                f"{self.storage.url_for('')} does not list the internal key {name!r} it just "
                "created; the 'storage' lock manager needs list() to return keys under "
                f"{LOCKS_PREFIX!r} - use another lock manager with this backend"
            )
        if gens[-1] != generation:
            # Our view was stale and old generations had been cleaned up: a newer one exists.
            self.storage.delete(name)
            return False
        with _storage_holds_lock:
            _storage_holds[(self.location, key, holder)] = (generation, token)
        for old in gens:
            if old < generation - 1:
                self.storage.delete(self._object(key, old))
        return True

    def acquire(self, key: str, holder: str, *, timeout: float | None = None,
                lease: float | None = None) -> bool:
        lease = self.lease_or_default(lease)
        deadline = base.deadline_after(timeout)
        delay = 0.005
        while True:
            generation, rec = self._top(key)
            if base.lease_active(rec) and rec["holder"] == holder:
                if self.renew(key, holder, lease=lease):
                    return True
                continue
            if not base.lease_active(rec):
                if rec is not None and not rec.get("released"):
                    base.log().warning("breaking the lock of %r held by %s: its lease ran out",
                                   key, rec["holder"])
                if self._take(key, holder, generation + 1, lease):
                    return True
                continue  # someone else took it first: look again
            remaining = base.time_left(deadline)
            if remaining <= 0:
                return False
            base.wait(min(delay, max(rec["expires"] - time.time(), 0) + 0.005, remaining))
            delay = min(delay * 2, self.poll_interval)

    def _mine(self, key: str, holder: str) -> tuple[int, dict] | None:
        generation, rec = self._top(key)
        if rec is None or rec.get("released") or rec["holder"] != holder:
            return None
        with _storage_holds_lock:
            known = _storage_holds.get((self.location, key, holder))
        if known is not None and known != (generation, rec.get("token")):
            return None
        return generation, rec

    def release(self, key: str, holder: str) -> None:
        mine = self._mine(key, holder)
        with _storage_holds_lock:
            known = _storage_holds.pop((self.location, key, holder), None)
        if mine is None:
            raise NotLockHolder(key, holder, self, lost=known is not None)
        generation, rec = mine
        # Overwriting our own generation is harmless even if a newer one appeared meanwhile.
        self.storage.write(self._object(key, generation),
                           base.lease_record(key, holder, rec.get("token", ""), 0, released=True))
        base.notify()

    def renew(self, key: str, holder: str, *, lease: float | None = None) -> bool:
        lease = self.lease_or_default(lease)
        mine = self._mine(key, holder)
        if mine is None:
            return False
        generation, rec = mine
        self.storage.write(self._object(key, generation),
                           base.lease_record(key, holder, rec.get("token", ""), lease))
        # Someone may have broken the lock between our read and our write (only if our
        # lease had run out); a newer generation tells.
        return self._generations(key)[-1] == generation

    def is_locked(self, key: str) -> bool:
        return base.lease_active(self._top(key)[1])

    def is_lock_holder(self, key: str, holder: str) -> bool:
        mine = self._mine(key, holder)
        return mine is not None and base.lease_active(mine[1])


def _forget_after_fork() -> None:
    global _storage_holds_lock
    _storage_holds_lock = threading.Lock()
    _storage_holds.clear()  # a forked child holds none of its parent's locks


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
