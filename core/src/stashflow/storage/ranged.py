"""A seekable reader over one stored object, made of ranged GETs (for backend authors).

`open_ranged(fetch, size, name)` turns a `fetch(start, end) -> bytes` function
into the buffered, seekable binary file that `StorageBackend.open_read` returns.

Each raw read fetches at most CHUNK bytes, so reading a header costs one small
request (BUFFER bytes) and reading a large value holds at most one chunk beyond
the caller's own buffer. For objects of TEE_BYTES or more, what is fetched
from the start onwards is also kept in an anonymous temp file: a record is read
twice (verified, then deserialized), and the second pass comes from local disk
instead of the network.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable

CHUNK = 8 * 1024 * 1024
BUFFER = 64 * 1024  # what one small read (a record header) fetches
TEE_BYTES = 8 * 1024 * 1024


class RangeReader(io.RawIOBase):
    """`fetch(start, end)` returns bytes [start, end) of an object of `size` bytes."""

    def __init__(self, fetch: Callable[[int, int], bytes], size: int, name: str):
        super().__init__()
        self._fetch = fetch
        self._size = size
        self._pos = 0
        self._tee: io.BufferedRandom | None = None
        self._teed = 0  # object bytes [0, _teed) are in the tee file
        self.name = name
        self.fetched = 0  # bytes downloaded so far

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self._size - self._pos)
        if n <= 0:
            return 0
        if self._pos < self._teed:
            self._tee.seek(self._pos)
            got = self._tee.readinto(view[: min(n, self._teed - self._pos)])
        else:
            data = self._fetch(self._pos, self._pos + min(n, CHUNK))
            got = len(data)
            view[:got] = data
            self.fetched += got
            if self._pos == self._teed and self._size >= TEE_BYTES:
                if self._tee is None:
                    self._tee = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
                self._tee.seek(self._teed)
                self._tee.write(data)
                self._teed += got
        self._pos += got
        return got

    def readall(self) -> bytes:
        rest = bytearray(max(self._size - self._pos, 0))
        view, done = memoryview(rest), 0
        while done < len(rest):
            n = self.readinto(view[done:])
            if not n:
                break
            done += n
        return bytes(rest[:done])

    def close(self) -> None:
        if self._tee is not None:
            self._tee.close()
            self._tee = None
        super().close()


def open_ranged(fetch: Callable[[int, int], bytes], size: int, name: str) -> io.BufferedReader:
    return io.BufferedReader(RangeReader(fetch, size, name), buffer_size=BUFFER)
