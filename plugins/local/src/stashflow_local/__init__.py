"""Local-disk result storage: the embedded default.

Writes go to a temp file beside the target and are published with one
`os.replace`, so a reader sees the old record, the whole new one, or nothing.
`create` publishes with `os.link`, which fails if the key exists: atomic
create-if-absent with complete contents. fsync is opt-in (`fsync=True`): a
record torn by a power cut is caught by its length and digest on read and
treated as a miss, so durability costs a syscall only where it is wanted.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from stashflow import hookimpl
from stashflow.exceptions import StorageError
from stashflow.keys import RESERVED_PREFIX, validate_storage_key
from stashflow.storage import BytesOrFile, StorageBackend, copy_into

TMP_PREFIX = f"{RESERVED_PREFIX}-tmp-"
# errno values meaning "this file system cannot make hard links"
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


class LocalFileSystem(StorageBackend):
    """Results as files under `basepath` (default: STASHFLOW_LOCAL_STORAGE_PATH)."""

    type_slug = "local-file-system"
    url_schemes = ("file",)

    basepath: str | None = None
    fsync: bool = False

    def __init__(self, **values: Any):
        super().__init__(**values)
        if self.basepath is None:
            from stashflow import settings

            self.basepath = str(settings.get("STASHFLOW_LOCAL_STORAGE_PATH"))
        self.basepath = os.path.abspath(os.path.expanduser(str(self.basepath)))
        self._root = self.basepath + os.sep
        self._real_root: str | None = None  # the root with links resolved, on first need

    @classmethod
    def from_url(cls, url: str) -> LocalFileSystem:
        """`file:///abs/path` or `file://localhost/abs/path` (percent-encoded, as from as_uri)."""
        from urllib.parse import unquote

        rest = url.split("://", 1)[1]
        if rest.startswith("localhost/"):
            rest = rest[len("localhost"):]
        return cls(basepath=unquote(rest) or ".")

    def url_for(self, key: str = "") -> str:
        return Path(self._root + key).as_uri() if key else Path(self.basepath).as_uri()

    def _path(self, key: str) -> str:
        return self._root + validate_storage_key(key)

    def _contained(self, key: str, path: str, action: str) -> str:
        """`path`, after checking that no symbolic link takes its directory outside the root.

        Keys are validated already; this stops a link planted inside the root from
        redirecting writes and deletes. Flat keys (no directory part) cost nothing.
        """
        if "/" in key:
            if self._real_root is None:
                self._real_root = os.path.realpath(self.basepath) + os.sep
            if not (os.path.realpath(os.path.dirname(path)) + os.sep).startswith(self._real_root):
                raise StorageError(
                    f"local-file-system: refusing to {action} {self.url_for(key)}: a symbolic "
                    f"link inside {self.basepath} leads outside it"
                )
        return path

    def _tmp_path(self, path: str) -> str:
        head, _, name = path.rpartition(os.sep)
        # pid + thread + a per-process counter is unique among live writers; O_EXCL
        # (and a fresh name on collision, see _open_tmp) covers a recycled pid.
        tag = f"{os.getpid()}-{threading.get_ident() % 100000}-{next(_counter)}"
        # At most 100 bytes of the name, so the temp name fits where a 255-byte key segment fits.
        short = name.encode("utf-8")[:100].decode("utf-8", "ignore")
        return f"{head}{os.sep}{TMP_PREFIX}{tag}-{short}"

    def _open_tmp(self, path: str) -> tuple[str, int]:
        tmp = self._tmp_path(path)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            return tmp, os.open(tmp, flags, 0o644)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except FileExistsError:  # left by a dead process whose pid came round again
            tmp = f"{tmp}-{uuid.uuid4().hex[:8]}"
        return tmp, os.open(tmp, flags, 0o644)

    def _error(self, action: str, key: str, exc: OSError) -> StorageError:
        err = StorageError(f"local-file-system: could not {action} {self.url_for(key)}: {exc}")
        err.errno = exc.errno
        return err

    def _begin(self, key: str) -> tuple[str, str, int]:
        """(target path, temp path, open temp fd) for a write of `key`."""
        path = self._contained(key, self._path(key), "write")
        try:
            return (path, *self._open_tmp(path))
        except OSError as exc:
            raise self._error("write", key, exc) from exc

    @contextlib.contextmanager
    def _staged(self, key: str) -> Iterator[tuple[str, str, IO[bytes]]]:
        """A temp file beside the target; removed unless the caller moves it into place."""
        path, tmp, fd = self._begin(key)
        try:
            with open(fd, "w+b") as f:
                yield path, tmp, f
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _finish(self, f: IO[bytes]) -> None:
        f.flush()
        if self.fsync:
            os.fsync(f.fileno())

    def _sync_directory(self, path: str) -> None:
        """With fsync=True, make the rename or link itself durable too."""
        if self.fsync:
            fd = os.open(os.path.dirname(path), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def open_write(self, key: str) -> _AtomicWrite:
        return _AtomicWrite(self, key)

    def write(self, key: str, data: BytesOrFile) -> None:
        if isinstance(data, (bytes, bytearray, memoryview)):
            self._write_bytes(key, data)
            return
        with self._staged(key) as (path, tmp, f):
            try:
                copy_into(data, f)
                self._finish(f)
                os.replace(tmp, path)
                self._sync_directory(path)
            except OSError as exc:
                raise self._error("write", key, exc) from exc

    def _write_bytes(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """`write` for bytes: bare system calls, no file object (every small persisted task)."""
        path, tmp, fd = self._begin(key)
        try:
            try:
                view = memoryview(data).cast("B")
                while view:
                    view = view[os.write(fd, view):]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            self._sync_directory(path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise self._error("write", key, exc) from exc
            raise

    def create(self, key: str, data: BytesOrFile) -> bool:
        with self._staged(key) as (path, tmp, f):
            try:
                copy_into(data, f)
                self._finish(f)
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise
                except OSError as exc:
                    if exc.errno not in _NO_LINKS:
                        raise
                    return self._create_exclusive(path, tmp, f)
                self._sync_directory(path)
            except FileExistsError:
                os.unlink(tmp)
                return False
            except OSError as exc:
                raise self._error("create", key, exc) from exc
            os.unlink(tmp)
            return True

    def _create_exclusive(self, path: str, tmp: str, staged: IO[bytes]) -> bool:
        """`create` where hard links are not supported: O_EXCL on the target, then copy.

        Still exactly one creator wins; a reader racing the copy can see a short
        record, which the record's length and digest checks reject.
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            os.unlink(tmp)
            return False
        try:
            with open(fd, "wb") as out:
                staged.seek(0)
                copy_into(staged, out)
                self._finish(out)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        self._sync_directory(path)
        os.unlink(tmp)
        return True

    def read(self, key: str) -> bytes:
        with self.open_read(key) as f:
            return f.read()

    def open_read(self, key: str) -> IO[bytes]:
        path = self._path(key)
        try:
            return open(path, "rb")
        except (IsADirectoryError, NotADirectoryError):
            # A directory at the key, or a file where a parent directory would be: no record.
            raise FileNotFoundError(errno.ENOENT, "no record at this key", path) from None

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def delete(self, key: str) -> None:
        path = self._contained(key, self._path(key), "delete")
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
            os.unlink(path)

    def stat(self, key: str) -> dict[str, Any]:
        path = self._path(key)
        try:
            st = os.stat(path)
        except NotADirectoryError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            raise FileNotFoundError(errno.ENOENT, "no record at this key", path)
        return {"size": st.st_size, "mtime": st.st_mtime}

    def list(self, prefix: str = "") -> Iterator[str]:
        base = prefix.rpartition("/")[0]
        start = self._root + base if base else self.basepath
        # Internal keys (lock records) are listed only when asked for by prefix; temp files never.
        hidden = TMP_PREFIX if prefix.startswith(RESERVED_PREFIX) else RESERVED_PREFIX
        yield from (k for k in self._walk(start, base, hidden) if k.startswith(prefix))

    def _walk(self, directory: str, rel: str, hidden: str = RESERVED_PREFIX) -> Iterator[str]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith(hidden):
                continue
            key = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(entry.path, key, hidden)
            elif entry.is_file(follow_symlinks=False):
                yield key

    def temp_files(self) -> Iterator[str]:
        """Paths of temp files left by writers that died (for garbage collection)."""
        for dirpath, _dirs, files in os.walk(self.basepath):
            for name in files:
                if name.startswith(TMP_PREFIX):
                    yield os.path.join(dirpath, name)


class _AtomicWrite:
    """`open_write`'s context: a temp file beside the target, renamed over it on success.

    A class rather than a generator context manager: this is on every persisted
    task's path, and the generator machinery costs more than the rest of it.
    """

    __slots__ = ("backend", "file", "key", "path", "tmp")

    def __init__(self, backend: LocalFileSystem, key: str):
        self.backend, self.key = backend, key
        self.path = backend._contained(key, backend._path(key), "write")

    def __enter__(self) -> IO[bytes]:
        try:
            self.tmp, fd = self.backend._open_tmp(self.path)
        except OSError as exc:
            raise self.backend._error("write", self.key, exc) from exc
        self.file = open(fd, "w+b")  # closed in __exit__
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._discard()
            if isinstance(exc, OSError) and not isinstance(exc, StorageError):
                # The temp file failed under the serializer (EFBIG, ENOSPC, EIO): say where.
                raise self.backend._error("write", self.key, exc) from exc
            return
        backend = self.backend
        try:
            backend._finish(self.file)
            self.file.close()
            os.replace(self.tmp, self.path)
            backend._sync_directory(self.path)
        except OSError as error:
            self._discard()
            raise backend._error("write", self.key, error) from error

    def _discard(self) -> None:
        self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


_counter = itertools.count()


@hookimpl
def register_storage_types(register):
    register(LocalFileSystem)
