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

Prefect's names work too: `MemoryLockManager()`, `FileSystemLockManager(lock_files_directory)`
(stashflow.locking.filesystem) and, on every manager, `acquire_lock`, `release_lock`,
`aacquire_lock` and `await_for_lock`.
"""

from .base import (
    DEFAULT_LEASE,
    LOCKS_PREFIX,
    Keepalive,
    LockManager,
    NotLockHolder,
    lock_name,
    new_holder,
    storage_location,
)
from .file import FileLockManager, default_lock_directory
from .filesystem import FileSystemLockManager
from .memory import MemoryLockManager
from .selection import (
    BUILTIN_LOCK_MANAGERS,
    default_lock_manager,
    default_lock_manager_name,
    resolve_lock_manager,
)
from .storage import StorageLockManager

__all__ = [
    "BUILTIN_LOCK_MANAGERS", "DEFAULT_LEASE", "LOCKS_PREFIX", "FileLockManager",
    "FileSystemLockManager", "Keepalive", "LockManager", "MemoryLockManager", "NotLockHolder",
    "StorageLockManager", "default_lock_directory",
    "default_lock_manager", "default_lock_manager_name", "lock_name", "new_holder",
    "resolve_lock_manager", "storage_location",
]
