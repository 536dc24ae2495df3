"""Storage backends: where record bytes live.

A backend implements a handful of key -> bytes primitives. Keys reaching a
backend have been validated by `stashflow.keys.validate_key`; a backend only
maps them under its root. `read`/`open_read` of a missing key raise
FileNotFoundError; `delete` of a missing key does nothing.
"""

from __future__ import annotations

from .base import (
    SPOOL_BYTES,
    BytesOrFile,
    Spool,
    StorageBackend,
    clean_folder,
    copy_into,
    make_dirs,
    record_keys,
)
from .fsspec import FsspecStorageBackend

__all__ = ["SPOOL_BYTES", "BytesOrFile", "FsspecStorageBackend", "Spool", "StorageBackend", "clean_folder",
           "copy_into", "make_dirs", "record_keys"]
