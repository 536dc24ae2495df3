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
import os
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

    @classmethod
    def from_url(cls, url: str) -> LocalFileSystem:
        path = url.split("://", 1)[1]
        return cls(basepath=path or ".")

    def url_for(self, key: str = "") -> str:
        return Path(self._root + key).as_uri() if key else Path(self.basepath).as_uri()

    def _path(self, key: str) -> str:
        return self._root + validate_storage_key(key)

    def _tmp_path(self, path: str) -> str:
        head, _, name = path.rpartition(os.sep)
        tag = f"{os.getpid()}-{threading.get_ident() % 100000}-{uuid.uuid4().hex[:8]}"
        return f"{head}{os.sep}{TMP_PREFIX}{tag}-{name[:100]}"

    def _open_tmp(self, path: str) -> tuple[str, int]:
        tmp = self._tmp_path(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            return tmp, os.open(tmp, flags, 0o644)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return tmp, os.open(tmp, flags, 0o644)

    def _error(self, action: str, key: str, exc: OSError) -> StorageError:
        err = StorageError(f"local-file-system: could not {action} {self.url_for(key)}: {exc}")
        err.errno = exc.errno
        return err

    @contextlib.contextmanager
    def _staged(self, key: str) -> Iterator[tuple[str, str, IO[bytes]]]:
        """A temp file beside the target; removed unless the caller moves it into place."""
        path = self._path(key)
        try:
            tmp, fd = self._open_tmp(path)
        except OSError as exc:
            raise self._error("write", key, exc) from exc
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

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        with self._staged(key) as (path, tmp, f):
            yield f
            try:
                self._finish(f)
                os.replace(tmp, path)
            except OSError as exc:
                raise self._error("write", key, exc) from exc

    def write(self, key: str, data: BytesOrFile) -> None:
        with self._staged(key) as (path, tmp, f):
            try:
                copy_into(data, f)
                self._finish(f)
                os.replace(tmp, path)
            except OSError as exc:
                raise self._error("write", key, exc) from exc

    def create(self, key: str, data: BytesOrFile) -> bool:
        with self._staged(key) as (path, tmp, f):
            try:
                copy_into(data, f)
                self._finish(f)
                os.link(tmp, path)
            except FileExistsError:
                os.unlink(tmp)
                return False
            except OSError as exc:
                raise self._error("create", key, exc) from exc
            os.unlink(tmp)
            return True

    def read(self, key: str) -> bytes:
        with open(self._path(key), "rb") as f:
            return f.read()

    def open_read(self, key: str) -> IO[bytes]:
        return open(self._path(key), "rb")

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(key))

    def stat(self, key: str) -> dict[str, Any]:
        st = os.stat(self._path(key))
        return {"size": st.st_size, "mtime": st.st_mtime}

    def list(self, prefix: str = "") -> Iterator[str]:
        base = prefix.rpartition("/")[0]
        start = self._root + base if base else self.basepath
        yield from (k for k in self._walk(start, base) if k.startswith(prefix))

    def _walk(self, directory: str, rel: str) -> Iterator[str]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith(RESERVED_PREFIX):
                continue
            key = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(entry.path, key)
            elif entry.is_file(follow_symlinks=False):
                yield key

    def temp_files(self) -> Iterator[str]:
        """Paths of temp files left by writers that died (for garbage collection)."""
        for dirpath, _dirs, files in os.walk(self.basepath):
            for name in files:
                if name.startswith(TMP_PREFIX):
                    yield os.path.join(dirpath, name)


@hookimpl
def register_storage_types(register):
    register(LocalFileSystem)
