"""`FsspecStorageBackend`: any fsspec file system as result storage.

A subclass gives `connect()` (the file system) and `root()` (where keys live),
and declares what its file system can do: `atomic_rename` (a file-like store:
writes are a temp file beside the key renamed over it; False for object
stores, where one PUT is atomic), `create_by` ("link", "marker" or "lock": how
`create` keeps other creators out) and `thread_safe_client` (False: a client
per thread). The guarantees each gives are in docs/guides/write-storage-backend.md.

Temp files and marker owner files are named `.stashflow-tmp-...`: what a writer
that died leaves, `stashflow.maintenance.gc` finds with `list`, ages with
`stat`'s "mtime" and removes with `delete`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
import re
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any, ClassVar

from ..exceptions import StorageError
from ..keys import RESERVED_PREFIX, TEMP_PREFIX, validate_storage_key
from .base import BytesOrFile, StorageBackend, copy_into

MARKER_PREFIX = f"{RESERVED_PREFIX}-create-"  # create markers: `<folder>/.stashflow-create-<digest>`
_CREATE_BY = ("link", "marker", "lock")
# "lock": one of these per key (by hash), shared by every backend instance of this process.
_PROCESS_LOCKS = tuple(threading.Lock() for _ in range(64))
_FTP_TIME = re.compile(r"\d{14}(\.\d+)?")  # RFC 3659 time-val (MLSD "modify"), UTC


class FsspecStorageBackend(StorageBackend):
    """A backend over an fsspec file system: subclasses provide `connect()` and `root()`."""

    #: a file-like store: writes go to a temp file beside the target, renamed over it
    atomic_rename: ClassVar[bool] = True
    #: how `create` excludes other creators: "link", "marker" or "lock" (this process only)
    create_by: ClassVar[str] = "lock"
    #: False: one client per thread; True: one per process
    thread_safe_client: ClassVar[bool] = False
    #: seconds a client may sit unused before it is replaced (servers drop idle connections)
    client_idle: ClassVar[float | None] = None
    #: seconds after which a create marker is taken for a dead writer's and broken
    marker_stale: ClassVar[float] = 60.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.create_by not in _CREATE_BY:
            raise TypeError(f"{cls.__name__}.create_by is {cls.create_by!r}; "
                            f"use one of {', '.join(map(repr, _CREATE_BY))}")
        if cls.create_by == "link" and not cls.atomic_rename:
            raise TypeError(f"{cls.__name__}.create_by = 'link' needs a file-like store "
                            "(atomic_rename = True): it links the staged temp file to the key")

    def root(self) -> str:  # pragma: no cover - abstract
        """The folder (or bucket prefix) keys live under, as the file system spells it."""
        raise NotImplementedError

    # -- the client ---------------------------------------------------------------------

    def filesystem(self) -> Any:
        """This thread's client (the process's, when `thread_safe_client`), made on first use.

        Made again in a forked child, after `client_idle` seconds unused, and after a
        failure (a client whose connection broke stays broken).
        """
        slot = self.__dict__.get("_clients") or self.__dict__.setdefault(
            "_clients", _Slot() if self.thread_safe_client else threading.local())
        now = time.monotonic()
        fs = getattr(slot, "fs", None)
        if fs is None or slot.pid != os.getpid() or (
                self.client_idle is not None and now - slot.used > self.client_idle):
            slot.fs = fs = self.connect()
            slot.pid = os.getpid()
        slot.used = now
        return fs

    def _forget_client(self) -> None:
        slot = self.__dict__.get("_clients")
        if slot is not None:
            slot.fs = None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_clients", None)
        return state

    # -- names and errors ---------------------------------------------------------------

    def _path(self, key: str) -> str:
        root = self.root().rstrip("/")
        return f"{root}/{validate_storage_key(key)}" if key else root

    def url_for(self, key: str = "") -> str:
        return self._path(key)

    def _error(self, action: str, key: str, exc: BaseException) -> StorageError:
        self._forget_client()  # the next call connects anew
        reason = self.redact(str(exc) or type(exc).__name__)
        return StorageError(f"{self.type_slug}: could not {action} {self.url_for(key)}: {reason}")

    def _missing(self, key: str) -> FileNotFoundError:
        return FileNotFoundError(errno.ENOENT, f"{self.type_slug}: no object at {self.url_for(key)}")

    def _info(self, fs: Any, key: str, path: str, action: str) -> dict[str, Any] | None:
        """The file system's info on `path`; None if there is no file there."""
        try:
            info = fs.info(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except Exception as exc:
            raise self._error(action, key, exc) from self.safe_cause(exc)
        return info if info.get("type") == "file" else None  # a folder is no object

    def _failed(self, fs: Any, key: str, path: str, action: str, exc: Exception) -> OSError:
        """What a failed read raises: FileNotFoundError if no file is there, else StorageError.

        Asked again, not taken from `exc`: some file systems (fsspec's ftp) call every
        server error FileNotFoundError, and a broken connection is no cache miss.
        """
        if self._info(fs, key, path, action) is None:
            return self._missing(key)
        return self._error(action, key, exc)

    # -- writing ------------------------------------------------------------------------

    def write(self, key: str, data: BytesOrFile) -> None:
        fs, path = self.filesystem(), self._path(key)
        try:
            if self._one_put(data):
                self._put(fs, path, data)
                return
            with self._staged(fs, path, data) as tmp:
                fs.mv(tmp, path)
        except StorageError:
            raise
        except Exception as exc:
            raise self._error("write", key, exc) from self.safe_cause(exc)

    def create(self, key: str, data: BytesOrFile) -> bool:
        fs, path = self.filesystem(), self._path(key)
        try:
            if self.create_by == "link":
                with self._staged(fs, path, data) as tmp:
                    try:
                        fs.link(tmp, path)  # fails if the key exists: the one atomic step
                        created = True
                    except FileExistsError:
                        created = False
                    fs.rm_file(tmp)
                    return created
            # Staged first: the exclusion is held only to check the key and publish it.
            with contextlib.nullcontext() if self._one_put(data) else self._staged(fs, path, data) as tmp:
                with self._exclusive(fs, key, path) as absent:
                    if absent and tmp:
                        fs.mv(tmp, path)
                    elif absent:
                        self._put(fs, path, data)
                if tmp and not absent:
                    fs.rm_file(tmp)
                return absent
        except StorageError:
            raise
        except Exception as exc:
            raise self._error("create", key, exc) from self.safe_cause(exc)

    def _one_put(self, data: BytesOrFile) -> bool:
        """Whether `data` goes straight to its key: bytes, on an object store (one PUT is atomic).

        A file is staged even there: a file that fails half way would otherwise be
        published half written by the upload's close.
        """
        return not self.atomic_rename and isinstance(data, (bytes, bytearray, memoryview))

    def _put(self, fs: Any, path: str, data: BytesOrFile) -> None:
        """`data` to `path` in one write; on a file-like store, missing parent folders are made."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
            try:
                fs.pipe_file(path, data)
            except Exception:
                if not self.atomic_rename:
                    raise
                self._make_parents(fs, path)  # missing, or made by another writer since
                fs.pipe_file(path, data)
            return
        if self.atomic_rename:  # a file is read once: its folders first
            self._make_parents(fs, path)
        with fs.open(path, "wb") as f:
            copy_into(data, f)

    @staticmethod
    def _make_parents(fs: Any, path: str) -> None:
        """The missing folders above `path`, made one level at a time."""
        missing = []
        parent = path.rpartition("/")[0]
        while parent and not fs.isdir(parent):
            missing.append(parent)
            parent = parent.rpartition("/")[0]
        for folder in reversed(missing):
            try:
                fs.mkdir(folder, create_parents=False)
            except Exception:
                if not fs.isdir(folder):  # made by another writer meanwhile is fine
                    raise

    @contextlib.contextmanager
    def _staged(self, fs: Any, path: str, data: BytesOrFile) -> Iterator[str]:
        """`data` in a temp file beside `path`; removed if the caller fails."""
        head, _, name = path.rpartition("/")
        # Random, not pid-based: writers on several machines share the folder. At most
        # 100 bytes of the name, so the temp name fits where a 255-byte segment fits.
        short = name.encode("utf-8")[:100].decode("utf-8", "ignore")
        tmp = f"{head}/{TEMP_PREFIX}{secrets.token_hex(8)}-{short}"
        try:
            self._put(fs, tmp, data)
            yield tmp
        except BaseException:
            with contextlib.suppress(Exception):
                fs.rm_file(tmp)
            raise

    @contextlib.contextmanager
    def _exclusive(self, fs: Any, key: str, path: str) -> Iterator[bool]:
        """Keep other creators of `key` out; yields whether the key is absent (publish it then)."""
        if self.create_by == "lock":
            with _PROCESS_LOCKS[hash(path) % len(_PROCESS_LOCKS)]:
                yield self._info(fs, key, path, "create") is None
            return
        mine = self._take_marker(fs, key, path)
        if mine is None:  # the key was created meanwhile
            yield False
            return
        try:
            yield self._info(fs, key, path, "create") is None
        finally:
            # Not removed (the connection broke): the next creator breaks it once stale.
            with contextlib.suppress(Exception):
                fs.rm_file(mine)
                fs.rmdir(mine.rpartition("/")[0])

    def _take_marker(self, fs: Any, key: str, path: str) -> str | None:
        """Hold the marker of `path` (returns our owner file), or None once the key exists.

        Each creator writes its own owner file into the marker folder and then lists
        the folder: it holds the marker if its file is the only one. Of two creators,
        the later to list sees the other's file, so at most one holds it (both may
        back off, and retry after a random wait). An owner file older than
        `marker_stale` (by the server's clock, or seen that long) is a dead writer's
        and is removed; gc removes such files too, as temp files, after its grace.
        """
        head, _, name = path.rpartition("/")
        marker = f"{head}/{MARKER_PREFIX}{hashlib.blake2b(name.encode(), digest_size=16).hexdigest()}"
        mine = f"{marker}/{TEMP_PREFIX}{secrets.token_hex(8)}"
        me = fs._strip_protocol(mine)
        seen: dict[str, float] = {}  # another owner file -> when we first saw it
        delay = 0.005
        while self._info(fs, key, path, "create") is None:
            self._announce(fs, mine)
            try:
                owners = [e for e in fs.ls(marker, detail=True) if e.get("type") == "file"]
                if all(fs._strip_protocol(e["name"]) == me for e in owners):
                    return mine
                fs.rm_file(mine)  # someone else is there: make way
                with contextlib.suppress(Exception):  # the last one out removes the folder
                    fs.rmdir(marker)
            except BaseException:
                with contextlib.suppress(Exception):
                    fs.rm_file(mine)
                raise
            now = time.monotonic()
            # Our file was just written: its mtime is the server's "now" for the others'.
            server_now = next((_mtime(e) for e in owners if fs._strip_protocol(e["name"]) == me), None)
            for entry in owners:
                if fs._strip_protocol(entry["name"]) == me:
                    continue
                age = now - seen.setdefault(entry["name"], now)
                written = _mtime(entry)
                if server_now is not None and written is not None:
                    age = max(age, server_now - written)
                if age > self.marker_stale:
                    with contextlib.suppress(Exception):
                        fs.rm_file(entry["name"])
            time.sleep(delay * random.random())
            delay = min(delay * 2, 0.2)
        return None

    def _announce(self, fs: Any, mine: str) -> None:
        """Write our owner file; its folder comes and goes as holders release the marker."""
        for attempt in range(8):
            try:
                fs.pipe_file(mine, b"")
                return
            except Exception:
                if attempt == 7 or not self.atomic_rename:  # object stores have no folders to make
                    raise
            with contextlib.suppress(Exception):  # made by another creator meanwhile is fine
                fs.mkdir(mine.rpartition("/")[0], create_parents=False)

    # -- reading ------------------------------------------------------------------------

    def read(self, key: str) -> bytes:
        fs, path = self.filesystem(), self._path(key)
        try:
            return fs.cat_file(path)
        except Exception as exc:
            raise self._failed(fs, key, path, "read", exc) from self.safe_cause(exc)

    def open_read(self, key: str) -> IO[bytes]:
        fs, path = self.filesystem(), self._path(key)
        try:
            f = fs.open(path, "rb")
        except Exception as exc:
            raise self._failed(fs, key, path, "read", exc) from self.safe_cause(exc)
        # Some file systems (fsspec's ftp) open a folder as an empty file.
        if getattr(f, "details", {}).get("type", "file") != "file":
            f.close()
            raise self._missing(key)
        return f

    def exists(self, key: str) -> bool:
        return self._info(self.filesystem(), key, self._path(key), "check") is not None

    def stat(self, key: str) -> dict[str, Any]:
        info = self._info(self.filesystem(), key, self._path(key), "stat")
        if info is None:
            raise self._missing(key)
        mtime = _mtime(info)
        return {"size": info["size"]} if mtime is None else {"size": info["size"], "mtime": mtime}

    # -- deleting and listing -----------------------------------------------------------

    def delete(self, key: str) -> None:
        fs, path = self.filesystem(), self._path(key)
        try:
            fs.rm_file(path)
        except Exception as exc:
            if self._info(fs, key, path, "delete") is not None:
                raise self._error("delete", key, exc) from self.safe_cause(exc)
            return  # nothing was there (a folder is no object either)
        parts = key.split("/")
        if len(parts) > 1 and parts[-2].startswith(MARKER_PREFIX):
            # A create marker's orphaned owner file (gc takes it): the folder goes too, once empty.
            with contextlib.suppress(Exception):
                fs.rmdir(path.rpartition("/")[0])

    def list(self, prefix: str = "") -> Iterator[str]:
        fs = self.filesystem()
        root = self.root().rstrip("/")
        base = prefix.rpartition("/")[0]
        start = f"{root}/{base}" if base else root
        cut = len(fs._strip_protocol(root).rstrip("/")) + 1
        try:
            # Object stores list a prefix in one paged request; folders are walked here,
            # where a failure is raised (fsspec's own walk drops errors below the top).
            paths = list(fs.find(start) if not self.atomic_rename else _files(fs, fs._strip_protocol(start)))
        except FileNotFoundError:
            return
        except Exception as exc:
            raise self._error("list", prefix, exc) from self.safe_cause(exc)
        for path in paths:
            key = fs._strip_protocol(path)[cut:]
            if key.startswith(prefix):
                yield key


class _Slot:
    """The process's client, for `thread_safe_client` (a threading.local holds one per thread)."""

    fs: Any = None
    pid = 0
    used = 0.0


def _files(fs: Any, folder: str) -> Iterator[str]:
    """Every file below `folder`, walking its folders; a folder removed meanwhile is skipped."""
    try:
        entries = fs.ls(folder, detail=True)
    except FileNotFoundError:
        return
    for entry in entries:
        name = entry["name"].rstrip("/")
        if entry.get("type") == "directory":
            if name != folder:
                yield from _files(fs, name)
        elif entry.get("type") == "file":
            yield name


def _mtime(info: dict[str, Any]) -> float | None:
    """Seconds since the epoch at which the file was last written, from an fsspec info dict."""
    for field in ("mtime", "modify", "LastModified", "last_modified", "updated", "created"):
        value = info.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, datetime):
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        if isinstance(value, str):
            if _FTP_TIME.fullmatch(value):
                whole, _, fraction = value.partition(".")
                stamp = datetime.strptime(whole, "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp()
                return stamp + float(f"0.{fraction or 0}")
            with contextlib.suppress(ValueError):
                return _mtime({"mtime": datetime.fromisoformat(value)})
    return None


__all__ = ["MARKER_PREFIX", "FsspecStorageBackend"]
