"""The StorageBackend base class and the helpers every backend shares.

A backend implements a handful of key -> bytes primitives. Keys reaching a
backend have been validated by `stashflow.keys.validate_key`; a backend only
maps them under its root. `read`/`open_read` of a missing key raise
FileNotFoundError; `delete` of a missing key does nothing.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any, ClassVar

from .._files import make_dirs
from ..blocks import Block
from ..exceptions import StorageNotFound
from ..keys import RESERVED_PREFIX, is_internal

BytesOrFile = bytes | bytearray | memoryview | IO[bytes]
SPOOL_BYTES = 8 * 1024 * 1024  # records larger than this spool to a temp file, not memory


class StorageBackend(Block):
    """Base class of storage backends (a Block: configurable and saveable)."""

    type_slug: ClassVar[str]
    url_schemes: ClassVar[tuple[str, ...]] = ()

    # -- the primitives a backend implements --------------------------------------------

    def write(self, key: str, data: BytesOrFile) -> None:
        """Store `data` at `key`, atomically.

        `data` is bytes-like, except for records larger than SPOOL_BYTES written
        through the default `open_write`, which arrive as a readable binary file.
        """
        raise NotImplementedError

    def read(self, key: str) -> bytes:
        """The whole object at `key`. Implement this or `open_read` (or both)."""
        if type(self).open_read is StorageBackend.open_read:
            raise NotImplementedError(f"{type(self).__name__} implements neither read nor open_read")
        with self.open_read(key) as f:
            return f.read()

    def open_read(self, key: str) -> IO[bytes]:
        """A binary, seekable file object on the object at `key` (default: over `read`)."""
        if type(self).read is StorageBackend.read:
            raise NotImplementedError(f"{type(self).__name__} implements neither read nor open_read")
        return io.BytesIO(self.read(key))

    def exists(self, key: str) -> bool:
        """True if an object is stored at `key` (default: `stat` finds one)."""
        try:
            self.stat(key)
        except FileNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key the backend holds that starts with `prefix` (a plain string prefix).

        In no set order, internal keys (lock records, temp files: a segment starting
        with ".stashflow") included: core leaves those out where records are meant
        (`record_keys`), so a backend need not know about them.
        """
        raise NotImplementedError

    def create(self, key: str, data: BytesOrFile) -> bool:
        """Store `data` only if `key` is absent; True when this call created it."""
        raise NotImplementedError

    # -- what the backend declares to the rest of stashflow -----------------------------

    #: the registered lock manager that suits this storage when none is named ("storage":
    #: lock records kept in the storage itself, which works anywhere)
    default_lock_manager: ClassVar[str] = "storage"

    def lock_directory(self) -> str | None:
        """A private local directory for the "file" lock manager's files, or None
        (then `$STASHFLOW_HOME/locks`). Made on demand, never a link."""
        return None

    def location(self) -> str:
        """Where the objects live, as one string: locks on the same objects share names."""
        return f"{self.type_slug}:{self.url_for('')}"

    # -- the client ------------------------------------------------------------------

    _fs: Any = None  # connect()'s client and the process that made it; never pickled
    _fs_pid = 0

    def connect(self) -> Any:
        """Build this backend's client (an fsspec file system, an SDK client...)."""
        raise NotImplementedError(f"{type(self).__name__} has no client to connect")

    def filesystem(self) -> Any:
        """The client from `connect()`, made on first use and again in a forked child."""
        if self._fs is None or self._fs_pid != os.getpid():
            self._fs, self._fs_pid = self.connect(), os.getpid()
        return self._fs

    def __getstate__(self) -> dict[str, Any]:
        # Clients hold sockets and event-loop threads: the other side connects anew
        # (process pools, Dask workers).
        state = dict(self.__dict__)
        state.pop("_fs", None)
        state.pop("_fs_pid", None)
        return state

    # -- derived ----------------------------------------------------------------------

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        """A seekable file to write the object into; published atomically on success.

        The default spools to memory (to disk past SPOOL_BYTES) and then calls
        `write`; backends with a cheaper way (a temp file beside the target) override it.
        """
        with Spool(max_size=SPOOL_BYTES) as spool:
            yield spool
            size = spool.seek(0, 2)
            spool.seek(0)
            # Small records as bytes, which every backend takes; big ones as a file.
            self.write(key, spool.read() if size <= SPOOL_BYTES else spool)

    def list_entries(self, prefix: str = "") -> Iterator[tuple[str, str | None]]:
        """`list` for maintenance: (key, None) per object, (name, why) per entry that is none.

        The default reports what `list` does; local disk also reports the links,
        FIFOs and sockets it will not follow or open, and names as found.
        """
        return ((key, None) for key in self.list(prefix))

    def stat(self, key: str) -> dict[str, Any]:
        """At least {"size": int}; {"mtime": float} where the backend knows it."""
        with self.open_read(key) as f:
            return {"size": f.seek(0, 2)}

    def url_for(self, key: str = "") -> str:
        """A human-readable location for messages."""
        return f"{self.type_slug}:{key}"

    @classmethod
    def from_url(cls, url: str) -> StorageBackend:
        raise StorageNotFound(f"{cls.__name__} cannot be built from a URL ({url!r})")


class Spool(tempfile.SpooledTemporaryFile):
    """Moves to disk *before* a write would pass max_size: a big write is never copied in memory."""

    def write(self, data) -> int:
        if not self._rolled and self._file.tell() + memoryview(data).nbytes > self._max_size:
            self.rollover()
        return super().write(data)


def record_keys(storage: StorageBackend, prefix: str = "") -> Iterator[str]:
    """The keys of records under `prefix`: `storage.list` without stashflow's internal keys.

    Internal keys (lock records, temp files) are listed only when `prefix` asks for
    them by starting with ".stashflow", as the "storage" lock manager does.
    """
    keys = storage.list(prefix)
    if prefix.startswith(RESERVED_PREFIX):
        return keys
    return (key for key in keys if not is_internal(key))


def clean_folder(folder: str | None, field: str = "folder") -> str:
    """A bucket/container folder prefix without outer slashes; refuses '', '.', '..' segments."""
    folder = (folder or "").strip("/")
    if folder and any(part in ("", ".", "..") for part in folder.split("/")):
        raise ValueError(f"{field} {folder!r} has an empty, '.' or '..' segment")
    return folder


def copy_into(data: BytesOrFile, file: IO[bytes]) -> None:
    if isinstance(data, (bytes, bytearray, memoryview)):
        file.write(data)
    else:
        shutil.copyfileobj(data, file, 1024 * 1024)


__all__ = ["SPOOL_BYTES", "BytesOrFile", "Spool", "StorageBackend", "clean_folder", "copy_into", "make_dirs",
           "record_keys"]
