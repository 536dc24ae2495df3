"""`memory` storage: a process-wide dict per name; `memory://name`."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import IO

from ..hookspecs import hookimpl
from .base import BytesOrFile, StorageBackend

_spaces: dict[str, dict[str, bytes]] = {}
_lock = threading.Lock()


def _as_bytes(data: BytesOrFile) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    return data.read()


class MemoryStorage(StorageBackend):
    """Results in this process's memory, shared by every MemoryStorage of the same name."""

    type_slug = "memory"
    url_schemes = ("memory",)
    default_lock_manager = "memory"  # its objects live in this process only

    name: str = "default"

    @property
    def _space(self) -> dict[str, bytes]:
        with _lock:
            return _spaces.setdefault(self.name, {})

    def write(self, key: str, data: BytesOrFile) -> None:
        self._space[key] = _as_bytes(data)  # one dict store: atomic under the GIL

    def read(self, key: str) -> bytes:
        try:
            return self._space[key]
        except KeyError:
            raise FileNotFoundError(f"memory://{self.name}/{key}") from None

    def open_read(self, key: str) -> IO[bytes]:
        return io.BytesIO(self.read(key))

    def exists(self, key: str) -> bool:
        return key in self._space

    def delete(self, key: str) -> None:
        self._space.pop(key, None)

    def list(self, prefix: str = "") -> Iterator[str]:
        return iter([k for k in list(self._space) if k.startswith(prefix)])

    def create(self, key: str, data: BytesOrFile) -> bool:
        payload = _as_bytes(data)
        return self._space.setdefault(key, payload) is payload

    def stat(self, key: str) -> dict:
        return {"size": len(self.read(key))}

    def url_for(self, key: str = "") -> str:
        return f"memory://{self.name}/{key}"

    @classmethod
    def from_url(cls, url: str) -> MemoryStorage:
        rest = url.split("://", 1)[1].strip("/")
        return cls(name=rest or "default")

    def clear(self) -> None:
        self._space.clear()


@hookimpl
def register_storage_types(register):
    register(MemoryStorage)
