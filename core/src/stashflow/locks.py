"""Lock managers: what makes a SERIALIZABLE transaction run its body once per key.

A lock manager is bound to one storage backend and locks that backend's keys for
a *holder* (any string; transactions use a fresh one each). Every lock has a
*lease*: a holder that stops renewing (crashed, frozen, cut off) loses the lock
when the lease runs out, so it delays the others at most that long.
Transactions renew their lease from a background thread while they run.

Built-ins, registered through the `register_lock_managers` hook:

- ``memory``: threads of one process (a dict and a condition variable).
- ``file``: processes of one machine. `fcntl.flock` on one file per lock, which
  the kernel drops the moment its holder dies, plus a lease record inside the
  file so a live but stuck holder is bounded too. Each acquire opens its own file
  description, so threads of one process exclude each other as well.
- ``storage``: any backend, any number of machines: lock records live in the
  result storage itself and are taken with the backend's atomic create-if-absent.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import json
import math
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .durations import as_seconds
from .exceptions import LockError, LockManagerNotFound, LockNotHeld, LockTimeout
from .hookspecs import hookimpl
from .keys import RESERVED_PREFIX

DEFAULT_LEASE = 30.0
LOCKS_PREFIX = f"{RESERVED_PREFIX}/locks/"


def _log():
    import logging  # on first use: most runs never log

    return logging.getLogger("stashflow.locks")


# Wakes waiters of this process when a lock is released here, so a local hand-over
# does not wait for the next poll.
_wakeup = threading.Condition()


def _notify() -> None:
    with _wakeup:
        _wakeup.notify_all()


def _sleep(seconds: float) -> None:
    if seconds > 0:
        with _wakeup:
            _wakeup.wait(seconds)


def _token() -> str:
    return os.urandom(16).hex()


def new_holder() -> str:
    """A unique holder name that also says where it comes from: host:pid:thread:random."""
    host = os.uname().nodename if hasattr(os, "uname") else "host"
    return f"{host}:{os.getpid()}:{threading.get_ident()}:{_token()[:12]}"


def storage_location(storage: Any) -> str:
    """A string naming where a backend keeps its objects (type and root URL)."""
    if storage is None:
        return ""
    basepath = getattr(storage, "basepath", None)
    if storage.type_slug == "local-file-system" and basepath:
        return f"{storage.type_slug}:{os.path.realpath(basepath)}"  # one name per directory
    return f"{storage.type_slug}:{storage.url_for('')}"


def lock_name(location: str, key: str) -> str:
    """The name of the lock of `key` at `location`: a digest, so `a.v1` and `a.v2` never meet."""
    from hashlib import sha256

    return sha256(f"{location}\0{key}".encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _seconds(value: float, what: str = "lock lease") -> float:
    return as_seconds(value, what)


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError(f"a lock timeout must be None or seconds >= 0, not {timeout!r}")
    return time.monotonic() + timeout


def _remaining(deadline: float | None) -> float:
    return math.inf if deadline is None else deadline - time.monotonic()


class LockManager:
    """Locks on the keys of one storage backend, with leases.

    Subclasses implement `acquire`, `release`, `renew`, `is_locked` and
    `is_lock_holder`; `wait_for_lock` and `lock` are derived.
    """

    poll_interval: float = 0.05

    def __init__(self, storage: Any = None, *, default_lease: float = DEFAULT_LEASE,
                 poll_interval: float | None = None):
        self.storage = storage
        self.location = storage_location(storage)
        self.default_lease = _seconds(default_lease)
        if poll_interval is not None:
            self.poll_interval = _seconds(poll_interval, "poll interval")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location or 'no storage'})"

    def lease_or_default(self, lease: float | None) -> float:
        """`lease` checked, or this manager's default lease when None."""
        return self.default_lease if lease is None else _seconds(lease)

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
        deadline = _deadline(timeout)
        delay = 0.005
        while self.is_locked(key):
            remaining = _remaining(deadline)
            if remaining <= 0:
                return False
            _sleep(min(delay, remaining))
            delay = min(delay * 2, self.poll_interval)
        return True

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
                _log().exception("renewing the lock of %r failed; trying again", self.key)
                return True
            if not kept:
                self.lost = True
                _log().warning("the lock of %r was lost: its lease (%.1f s) ran out and "
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


# -- memory -----------------------------------------------------------------------------


class _MemoryLease:
    __slots__ = ("expires", "holder")

    def __init__(self, holder: str, expires: float):
        self.holder = holder
        self.expires = expires  # time.monotonic()


_memory_locks: dict[tuple[str, str], _MemoryLease] = {}


class MemoryLockManager(LockManager):
    """Locks for the threads of this process (a dict guarded by a condition variable)."""

    def _live(self, k: tuple[str, str]) -> _MemoryLease | None:
        current = _memory_locks.get(k)
        return current if current is not None and current.expires > time.monotonic() else None

    def acquire(self, key: str, holder: str, *, timeout: float | None = None,
                lease: float | None = None) -> bool:
        lease = self.lease_or_default(lease)
        deadline = _deadline(timeout)
        k = (self.location, key)
        with _wakeup:
            while True:
                current = self._live(k)
                if current is None or current.holder == holder:
                    _memory_locks[k] = _MemoryLease(holder, time.monotonic() + lease)
                    return True
                remaining = _remaining(deadline)
                if remaining <= 0:
                    return False
                _wakeup.wait(min(remaining, current.expires - time.monotonic() + 0.001))

    def release(self, key: str, holder: str) -> None:
        k = (self.location, key)
        with _wakeup:
            current = _memory_locks.get(k)
            if current is None or current.holder != holder:
                raise LockNotHeld(key, holder, self)
            del _memory_locks[k]
            _wakeup.notify_all()

    def renew(self, key: str, holder: str, *, lease: float | None = None) -> bool:
        lease = self.lease_or_default(lease)
        k = (self.location, key)
        with _wakeup:
            current = _memory_locks.get(k)
            if current is None or current.holder != holder:
                return False
            current.expires = time.monotonic() + lease
            return True

    def is_locked(self, key: str) -> bool:
        with _wakeup:
            return self._live((self.location, key)) is not None

    def is_lock_holder(self, key: str, holder: str) -> bool:
        with _wakeup:
            current = self._live((self.location, key))
            return current is not None and current.holder == holder


# -- records shared by the file and storage managers -------------------------------------


def _record(key: str, holder: str, token: str, lease: float, released: bool = False) -> bytes:
    return json.dumps({
        "key": key, "holder": holder, "token": token, "expires": time.time() + lease,
        "released": released, "pid": os.getpid(),
    }).encode()


def _parse(data: bytes) -> dict | None:
    try:
        rec = json.loads(data)
    except ValueError:
        return None
    ok = (isinstance(rec, dict) and isinstance(rec.get("holder"), str)
          and isinstance(rec.get("expires"), (int, float)))
    return rec if ok else None


def _active(rec: dict | None) -> bool:
    return rec is not None and not rec.get("released") and rec["expires"] > time.time()


# -- file -------------------------------------------------------------------------------


class _FileHold:
    __slots__ = ("expires", "fd", "token")

    def __init__(self, fd: int, token: str, expires: float):
        self.fd = fd
        self.token = token
        self.expires = expires  # time.time()


_file_holds: dict[tuple[str, str], _FileHold] = {}  # (lock path, holder) -> open lock file
_file_holds_lock = threading.Lock()


def default_lock_directory(storage: Any) -> Path:
    """`<root>/.stashflow/locks` for storage that has an internal area, else `$STASHFLOW_HOME/locks`.

    The internal area is made 0700 by the storage, which refuses one that is a link
    (local disk: `LocalFileSystem.internal_directory`).
    """
    internal = getattr(storage, "internal_directory", None)
    if internal is not None:
        return Path(internal("locks"))
    from . import settings

    return Path(settings.get("STASHFLOW_HOME")).expanduser() / "locks"


_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class FileLockManager(LockManager):
    """Locks for the processes (and threads) of one machine, as files in `directory`.

    A lock is held by holding `flock` on `<directory>/<digest>.lock`, whose content is
    the holder's lease record. The kernel drops the flock of a process that dies, so a
    killed holder frees the lock at once; a waiter that finds the flock held past the
    lease breaks it by unlinking the file. Opening, breaking and checking happen while
    holding a flock on the directory itself (a few system calls long), which is what
    makes two breakers unable to both win. Lock files stay after release (creating
    and deleting a file per lock costs more than the lock); `clean()` removes the
    idle ones. Not for network file systems.

    Lock files are opened relative to the directory, never through a link; the
    default directory must still be the one it was when the manager was made.
    """

    RECORD_SIZE = 512  # records are padded to this size, so a rewrite never truncates

    def __init__(self, storage: Any = None, *, directory: str | os.PathLike | None = None,
                 default_lease: float = DEFAULT_LEASE, poll_interval: float | None = None):
        super().__init__(storage, default_lease=default_lease, poll_interval=poll_interval)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            raise LockError("the 'file' lock manager needs fcntl (POSIX); use 'storage'") from None
        self._fcntl = fcntl
        self._storage_area = directory is None and hasattr(storage, "internal_directory")
        self.directory = str(directory if directory is not None
                             else default_lock_directory(storage))
        # A default directory is private: the opened one must be this one, not a link's target.
        self._expected = None if directory is not None else os.path.realpath(self.directory)

    def path_for(self, key: str) -> str:
        """The lock file of `key`."""
        return os.path.join(self.directory, self._name(key))

    def _name(self, key: str) -> str:
        return lock_name(self.location, key) + ".lock"

    def _make_directory(self) -> None:
        if self._storage_area:
            self.storage.internal_directory("locks")
        else:
            from ._files import make_private_dir

            make_private_dir(self.directory)

    def _open_directory(self) -> int:
        flags = os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC
        if self._expected is not None:
            flags |= _O_NOFOLLOW
        try:
            dfd = os.open(self.directory, flags)
        except FileNotFoundError:
            self._make_directory()
            dfd = os.open(self.directory, flags)
        except NotADirectoryError:  # O_NOFOLLOW met a link (Linux says ENOTDIR), or a file
            raise self._refused("is a symbolic link or not a directory") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._refused("is a symbolic link") from None
            raise
        if self._expected is not None and not _is_directory(dfd, self._expected):
            os.close(dfd)
            raise self._refused("is no longer the directory it was (a link was planted on the way)")
        return dfd

    def _refused(self, why: str) -> LockError:
        return LockError(f"{self!r}: refusing the lock directory {self.directory}: it {why}. "
                         "Remove what was planted there; stashflow makes it again")

    @contextlib.contextmanager
    def _guard(self) -> Iterator[int]:
        """The lock directory, open and flocked: lock files are opened relative to it."""
        dfd = self._open_directory()
        try:
            self._fcntl.flock(dfd, self._fcntl.LOCK_EX)
            yield dfd
        finally:
            os.close(dfd)  # drops the flock

    @staticmethod
    def _same_file(fd: int, dfd: int, name: str) -> bool:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    @staticmethod
    def _read(fd: int) -> dict | None:
        return _parse(os.pread(fd, 4096, 0).rstrip())

    def _write(self, fd: int, holder: str, token: str, lease: float,
               released: bool = False) -> None:
        data = json.dumps({"holder": holder[:300], "token": token, "pid": os.getpid(),
                           "expires": time.time() + lease, "released": released}).encode()
        os.pwrite(fd, data.ljust(self.RECORD_SIZE), 0)

    def _open(self, dfd: int, name: str, create: bool) -> int:
        """The lock file `name`: never through a link, never blocking, a regular file only."""
        flags = (os.O_RDWR | _O_CLOEXEC | _O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
                 | (os.O_CREAT if create else 0))
        try:
            fd = os.open(name, flags, 0o644, dir_fd=dfd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK, errno.ENXIO):
                raise self._planted(name, "a symbolic link or a socket") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise self._planted(name, "not a regular file")
        return fd

    def _planted(self, name: str, what: str) -> LockError:
        return LockError(f"{self!r}: refusing the lock file {os.path.join(self.directory, name)}: "
                         f"it is {what}. Remove it; stashflow makes it again")

    def _attempt(self, name: str, key: str, holder: str, lease: float) -> tuple[bool, float]:
        """One try under the guard: (True, 0) if taken, else (False, seconds worth waiting)."""
        fcntl = self._fcntl
        with self._guard() as dfd:
            fd = self._open(dfd, name, create=True)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                rec = self._read(fd)
                os.close(fd)
                if rec is not None and rec["expires"] <= time.time():
                    # Held past its lease by a live but stuck holder: break it. The
                    # holder keeps its flock on the unlinked file, which no one opens again.
                    _log().warning("breaking the lock of %r held by %s: its lease ran out",
                                   key, rec["holder"])
                    os.unlink(name, dir_fd=dfd)
                    return False, 0.0
                return False, (rec["expires"] - time.time()) if rec else math.inf
            except BaseException:
                os.close(fd)
                raise
            token = _token()
            try:
                self._write(fd, holder, token, lease)
            except BaseException:
                os.close(fd)
                raise
            with _file_holds_lock:
                _file_holds[(self.path_for(key), holder)] = _FileHold(fd, token, time.time() + lease)
            return True, 0.0

    def acquire(self, key: str, holder: str, *, timeout: float | None = None,
                lease: float | None = None) -> bool:
        lease = self.lease_or_default(lease)
        deadline = _deadline(timeout)
        name = self._name(key)
        if self.renew(key, holder, lease=lease):
            return True
        delay = 0.002
        while True:
            taken, wait = self._attempt(name, key, holder, lease)
            if taken:
                return True
            if wait == 0:
                continue  # a stale lock was just broken: try again at once
            remaining = _remaining(deadline)
            if remaining <= 0:
                return False
            _sleep(min(delay, wait + 0.001, remaining))
            delay = min(delay * 2, self.poll_interval)

    def release(self, key: str, holder: str) -> None:
        path = self.path_for(key)
        with _file_holds_lock:
            hold = _file_holds.pop((path, holder), None)
        if hold is None:
            raise LockNotHeld(key, holder, self)
        try:
            with self._guard() as dfd:
                kept = self._same_file(hold.fd, dfd, self._name(key))
                if kept:
                    self._write(hold.fd, holder, hold.token, 0, released=True)
        finally:
            os.close(hold.fd)  # drops the flock
            _notify()
        if not kept:
            raise LockNotHeld(key, holder, self, lost=True)

    def renew(self, key: str, holder: str, *, lease: float | None = None) -> bool:
        lease = self.lease_or_default(lease)
        path = self.path_for(key)
        with _file_holds_lock:
            hold = _file_holds.get((path, holder))
        if hold is None:
            return False
        with self._guard() as dfd:
            if not self._same_file(hold.fd, dfd, self._name(key)):
                return False
            self._write(hold.fd, holder, hold.token, lease)
            hold.expires = time.time() + lease
            return True

    def _probe(self, dfd: int, name: str) -> dict | bool | None:
        """Under the guard: False if no one holds the file's flock, else its record."""
        fcntl = self._fcntl
        try:
            fd = self._open(dfd, name, create=False)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return self._read(fd)
        else:
            return False  # released, or left behind by a holder that died
        finally:
            os.close(fd)

    def is_locked(self, key: str) -> bool:
        with self._guard() as dfd:
            rec = self._probe(dfd, self._name(key))
        return rec is not False and (rec is None or rec["expires"] > time.time())

    def is_lock_holder(self, key: str, holder: str) -> bool:
        path = self.path_for(key)
        with _file_holds_lock:
            hold = _file_holds.get((path, holder))
        if hold is None or hold.expires <= time.time():
            return False
        with self._guard() as dfd:
            return self._same_file(hold.fd, dfd, self._name(key))

    def clean(self) -> int:
        """Delete the lock files no one holds; returns how many."""
        removed = 0
        with self._guard() as dfd:
            names = [n for n in os.listdir(dfd) if n.endswith(".lock")]
        for name in names:
            with self._guard() as dfd:
                try:
                    idle = self._probe(dfd, name) is False
                except LockError:  # something planted: not a lock file of ours
                    continue
                if idle:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=dfd)
                        removed += 1
        return removed


def _is_directory(fd: int, expected: str) -> bool:
    """Is the directory open at `fd` the one at the resolved path `expected`?"""
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == expected  # Linux: where it really is
    except OSError:
        pass
    try:
        st = os.stat(expected, follow_symlinks=False)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


# -- storage ----------------------------------------------------------------------------


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
            return gens[-1], _parse(data)

    def _take(self, key: str, holder: str, generation: int, lease: float) -> bool:
        token = _token()
        name = self._object(key, generation)
        if not self.storage.create(name, _record(key, holder, token, lease)):
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
        deadline = _deadline(timeout)
        delay = 0.005
        while True:
            generation, rec = self._top(key)
            if _active(rec) and rec["holder"] == holder:
                if self.renew(key, holder, lease=lease):
                    return True
                continue
            if not _active(rec):
                if rec is not None and not rec.get("released"):
                    _log().warning("breaking the lock of %r held by %s: its lease ran out",
                                   key, rec["holder"])
                if self._take(key, holder, generation + 1, lease):
                    return True
                continue  # someone else took it first: look again
            remaining = _remaining(deadline)
            if remaining <= 0:
                return False
            _sleep(min(delay, max(rec["expires"] - time.time(), 0) + 0.005, remaining))
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
            raise LockNotHeld(key, holder, self, lost=known is not None)
        generation, rec = mine
        # Overwriting our own generation is harmless even if a newer one appeared meanwhile.
        self.storage.write(self._object(key, generation),
                           _record(key, holder, rec.get("token", ""), 0, released=True))
        _notify()

    def renew(self, key: str, holder: str, *, lease: float | None = None) -> bool:
        lease = self.lease_or_default(lease)
        mine = self._mine(key, holder)
        if mine is None:
            return False
        generation, rec = mine
        self.storage.write(self._object(key, generation),
                           _record(key, holder, rec.get("token", ""), lease))
        # Someone may have broken the lock between our read and our write (only if our
        # lease had run out); a newer generation tells.
        return self._generations(key)[-1] == generation

    def is_locked(self, key: str) -> bool:
        return _active(self._top(key)[1])

    def is_lock_holder(self, key: str, holder: str) -> bool:
        mine = self._mine(key, holder)
        return mine is not None and _active(mine[1])


# -- choosing a manager -----------------------------------------------------------------


BUILTIN_LOCK_MANAGERS: dict[str, type[LockManager]] = {
    "memory": MemoryLockManager,
    "file": FileLockManager,
    "storage": StorageLockManager,
}


def default_lock_manager_name(storage: Any) -> str:
    """"memory" for memory storage, "file" for local disk, "storage" for anything else."""
    slug = getattr(storage, "type_slug", None)
    if slug == "memory":
        return "memory"
    if slug == "local-file-system":
        return "file" if os.name == "posix" else "storage"
    return "storage"


def _parts(store: Any) -> tuple[Any, Any]:
    """(storage backend, registry) of a ResultStore or a bare StorageBackend."""
    storage = getattr(store, "storage", store)
    registry = getattr(store, "registry", None)
    if registry is None:
        from .plugins import get_registry

        registry = get_registry()
    return storage, registry


def default_lock_manager(store: Any) -> LockManager:
    """The lock manager that fits a ResultStore's (or a backend's) storage."""
    storage, registry = _parts(store)
    name = default_lock_manager_name(storage)
    factory = registry.lock_managers.get(name, BUILTIN_LOCK_MANAGERS[name])
    return factory(storage)


def resolve_lock_manager(spec: Any, store: Any) -> LockManager:
    """A LockManager from None (the default for `store`), a registered name, or an instance."""
    if spec is None:
        return default_lock_manager(store)
    if isinstance(spec, LockManager):
        return spec
    if isinstance(spec, str):
        storage, registry = _parts(store)
        factory = registry.lock_managers.get(spec)
        if factory is None:
            raise LockManagerNotFound(spec, list(registry.lock_managers))
        return factory(storage)
    raise TypeError(f"lock_manager must be None, a registered name or a LockManager, not {spec!r}")


def _forget_after_fork() -> None:
    """A forked child holds none of its parent's locks (and must not release them)."""
    global _wakeup, _file_holds_lock, _storage_holds_lock, _the_renewer, _renewer_lock
    _wakeup = threading.Condition()
    _the_renewer, _renewer_lock = None, threading.Lock()
    _file_holds_lock = threading.Lock()
    _storage_holds_lock = threading.Lock()
    for hold in _file_holds.values():
        with contextlib.suppress(OSError):
            os.close(hold.fd)  # the parent's descriptor (and flock) stay open
    _file_holds.clear()
    _storage_holds.clear()
    _memory_locks.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


@hookimpl
def register_lock_managers(register):
    for name, cls in BUILTIN_LOCK_MANAGERS.items():
        register(name, cls)


__all__ = [
    "DEFAULT_LEASE", "FileLockManager", "Keepalive", "LockManager", "MemoryLockManager",
    "StorageLockManager", "default_lock_manager", "default_lock_manager_name", "new_holder",
    "resolve_lock_manager", "storage_location",
]
