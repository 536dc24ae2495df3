"""Prefect's name for the "file" lock manager: `FileSystemLockManager(lock_files_directory)`."""

from __future__ import annotations

import os
from pathlib import Path

from .base import DEFAULT_LEASE
from .file import FileLockManager


class FileSystemLockManager(FileLockManager):
    """A FileLockManager keeping its lock files in `lock_files_directory` (made on first use).

    It locks bare keys, not (storage, key) pairs: like Prefect's, two stores that use
    one instance share the lock of a key. The files are this manager's own (`flock` and
    a lease record in `<digest>.lock`), so it excludes other stashflow processes using
    the same directory, not Prefect's.
    """

    def __init__(self, lock_files_directory: str | os.PathLike, *,
                 default_lease: float = DEFAULT_LEASE, poll_interval: float | None = None):
        self.lock_files_directory = Path(lock_files_directory).expanduser().resolve()
        super().__init__(directory=self.lock_files_directory, default_lease=default_lease,
                         poll_interval=poll_interval)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.lock_files_directory)!r})"
