"""The "file" lock manager: the processes (and threads) of one machine, by flock."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import settings
from .._files import make_private_dir
from ..exceptions import LockError
from . import base
from .base import DEFAULT_LEASE, LockManager, NotLockHolder, lock_name


class _FileHold:
    __slots__ = ("expires", "fd", "token")

    def __init__(self, fd: int, token: str, expires: float):
        self.fd = fd
        self.token = token
        self.expires = expires  # time.time()


_file_holds: dict[tuple[str, str], _FileHold] = {}  # (lock path, holder) -> open lock file
_file_holds_lock = threading.Lock()


def default_lock_directory(storage: Any) -> Path:
    """The backend's own lock area (`StorageBackend.lock_directory()`, private and never a
    link), else `$STASHFLOW_HOME/locks`."""
    area = storage.lock_directory() if storage is not None else None
    if area is not None:
        return Path(area)

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
        self._storage_area = (directory is None and storage is not None
                              and storage.lock_directory() is not None)
        self.directory = str(directory if directory is not None
                             else default_lock_directory(storage))
        # A default directory is private: the opened one must be this one, not a link's target.
        self._expected = None if directory is not None else os.path.realpath(self.directory)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_fcntl"]  # a module: imported again on the other side
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import fcntl

        self.__dict__.update(state)
        self._fcntl = fcntl

    def path_for(self, key: str) -> str:
        """The lock file of `key`."""
        return os.path.join(self.directory, self._name(key))

    def _name(self, key: str) -> str:
        return lock_name(self.location, key) + ".lock"

    def _make_directory(self) -> None:
        if self._storage_area:
            self.storage.lock_directory()  # makes it, privately
        else:

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
        return base.parse_lease(os.pread(fd, 4096, 0).rstrip())

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
                    base.log().warning("breaking the lock of %r held by %s: its lease ran out",
                                   key, rec["holder"])
                    os.unlink(name, dir_fd=dfd)
                    return False, 0.0
                return False, (rec["expires"] - time.time()) if rec else math.inf
            except BaseException:
                os.close(fd)
                raise
            token = base.new_token()
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
        deadline = base.deadline_after(timeout)
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
            remaining = base.time_left(deadline)
            if remaining <= 0:
                return False
            base.wait(min(delay, wait + 0.001, remaining))
            delay = min(delay * 2, self.poll_interval)

    def release(self, key: str, holder: str) -> None:
        path = self.path_for(key)
        with _file_holds_lock:
            hold = _file_holds.pop((path, holder), None)
        if hold is None:
            raise NotLockHolder(key, holder, self)
        try:
            with self._guard() as dfd:
                kept = self._same_file(hold.fd, dfd, self._name(key))
                if kept:
                    self._write(hold.fd, holder, hold.token, 0, released=True)
        finally:
            os.close(hold.fd)  # drops the flock
            base.notify()
        if not kept:
            raise NotLockHolder(key, holder, self, lost=True)

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


def _forget_after_fork() -> None:
    """A forked child holds none of its parent's locks (and must not release them)."""
    global _file_holds_lock
    _file_holds_lock = threading.Lock()
    for hold in _file_holds.values():
        with contextlib.suppress(OSError):
            os.close(hold.fd)  # the parent's descriptor (and flock) stay open
    _file_holds.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
