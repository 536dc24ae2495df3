"""A seekable reader over one stored object, made of ranged GETs (for backend authors).

`open_ranged(fetch, size, name)` turns a `fetch(start, end) -> bytes` function
into the seekable binary file that `StorageBackend.open_read` returns.

Reads are served from a read-ahead buffer that starts at FIRST_READ_BYTES (one
request reads a record header) and doubles with each sequential refill up to
MAX_READ_BYTES; a seek elsewhere starts it small again, and reaching the end of
the object lets it go. A read larger than the read-ahead goes straight into the
caller's buffer (pickle's and the record layer's `readinto`), so a big payload
is never held twice in memory. Each fetch asks for at most MAX_READ_BYTES.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from ..exceptions import StorageError

FIRST_READ_BYTES = 64 * 1024  # the first read-ahead: a record header and then some
MAX_READ_BYTES = 32 * 1024 * 1024  # the read-ahead's cap, and the largest single fetch

Fetch = Callable[[int, int], bytes | bytearray | memoryview]


class RangeReader(io.RawIOBase):
    """`fetch(start, end)` returns bytes [start, end) of an object of `size` bytes.

    `fetch` is called only with 0 <= start < end <= size, and must return exactly
    `end - start` bytes of the object as it was when the reader was opened (pin
    a version or ETag); its errors should be StorageError naming the backend and
    key. A fetch of the wrong length is a StorageError. `fetched` counts the
    bytes fetched so far.
    """

    def __init__(self, fetch: Fetch, size: int, name: str):
        super().__init__()
        self._fetch = fetch
        self._size = size
        self._pos = 0
        self._buf = memoryview(b"")  # the read-ahead: object bytes from _buf_start on
        self._buf_start = 0
        self._ahead = FIRST_READ_BYTES
        self._next = -1  # where a sequential fetch would start
        self.name = name
        self.fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence not in (io.SEEK_SET, io.SEEK_CUR, io.SEEK_END):
            raise ValueError(f"invalid whence ({whence!r})")
        base = (0, self._pos, self._size)[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        self._checkClosed()
        out = memoryview(buffer).cast("B")
        want = min(len(out), self._size - self._pos)
        done = 0
        while done < want:
            offset = self._pos - self._buf_start
            if 0 <= offset < len(self._buf):
                n = min(want - done, len(self._buf) - offset)
                out[done:done + n] = self._buf[offset:offset + n]
            else:
                n = self._fill(out[done:want])
            done += n
            self._pos += n
        if self._pos >= self._size:
            self._buf = memoryview(b"")  # at the end: nothing more to read ahead of
        return done

    def _fill(self, out: memoryview) -> int:
        """Fetch at the position: straight into `out` if it is bigger than the read-ahead."""
        start = self._pos
        sequential = start == self._next
        self._ahead = min(self._ahead * 2, MAX_READ_BYTES) if sequential else FIRST_READ_BYTES
        self._buf = memoryview(b"")  # behind us: let it go before fetching more
        if len(out) > self._ahead:
            n = min(len(out), MAX_READ_BYTES)
            out[:n] = self._get(start, start + n)
        else:
            self._buf = self._get(start, min(start + self._ahead, self._size))
            self._buf_start = start
            n = min(len(out), len(self._buf))
            out[:n] = self._buf[:n]
        return n

    def _get(self, start: int, end: int) -> memoryview:
        data = memoryview(self._fetch(start, end)).cast("B")
        if len(data) != end - start:
            raise StorageError(f"{self.name}: asked for {end - start} bytes at offset {start}, "
                               f"got {len(data)}; read it again")
        self.fetched += len(data)
        self._next = end
        return data

    def readall(self) -> bytes:
        rest = bytearray(max(self._size - self._pos, 0))
        self.readinto(rest)
        return bytes(rest)

    def close(self) -> None:
        self._buf = memoryview(b"")
        super().close()


def open_ranged(fetch: Fetch, size: int, name: str) -> RangeReader:
    """A seekable binary file over an object of `size` bytes read by `fetch(start, end)`."""
    return RangeReader(fetch, size, name)
