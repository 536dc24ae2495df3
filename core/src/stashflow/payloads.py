"""The files a serializer's streaming `dump` and `load` are given.

`dump(obj, file)` writes into a `PayloadWriter`: write-only, not seekable, with an
honest `tell()`; the record layer hashes what passes through and decides where
it goes. `load(file)` reads a `PayloadFile`: read-only and seekable over exactly
the payload (position 0 is its first byte), whatever file the payload lies in.
"""

from __future__ import annotations

import hashlib
import io
from typing import IO, Any

SPILL_BYTES = 1024 * 1024  # a streaming serializer's output is buffered up to this much
LOAD_BUFFER = 1024 * 1024  # a streaming load reads the payload through this buffer


def _xxh3_128() -> Any:
    import xxhash  # on first use: most processes never stream a payload

    return xxhash.xxh3_128()


class PayloadWriter(io.BufferedIOBase):
    """What a streaming serializer's `dump` writes to: a write-only binary file of the payload.

    `tell()` is the number of payload bytes written; it is not seekable (the
    payload may be streaming into a multipart upload, written once, front to
    back) and not readable. Closing it only stops further writes: the record is
    finished by the store once `dump` returns.

    Small payloads (the common case) stay in memory and become one write of header
    + payload. Past SPILL_BYTES, a placeholder header and the bytes so far go to
    the sink and the rest streams through, hashed on the way; the caller then
    patches the header.
    """

    def __init__(self, sink: IO[bytes], placeholder: bytes, sign: bool):
        super().__init__()
        self._sink = sink
        self._placeholder = placeholder
        self.chunks: list[bytes] | None = []
        self.digest: Any = None
        self.sha = hashlib.sha256() if sign else None
        self.length = 0
        self.sink_error: BaseException | None = None  # the storage failed, not the serializer

    def writable(self) -> bool:
        self._check_open()
        return True

    def readable(self) -> bool:
        self._check_open()
        return False

    def seekable(self) -> bool:
        self._check_open()
        return False

    def tell(self) -> int:
        self._check_open()
        return self.length

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed file (the serializer closed it)")
        n = data.nbytes if isinstance(data, memoryview) else len(data)
        if self.chunks is not None:
            self.chunks.append(data if type(data) is bytes else bytes(data))
            self.length += n
            if self.length > SPILL_BYTES:
                self._spill()
            return n
        self.digest.update(data)
        if self.sha is not None:
            self.sha.update(data)
        self._to_sink(data)
        self.length += n
        return n

    def _to_sink(self, data: Any) -> None:
        try:
            self._sink.write(data)
        except BaseException as exc:
            self.sink_error = exc
            raise

    def _spill(self) -> None:
        chunks, self.chunks = self.chunks, None
        self.digest = _xxh3_128()
        self._to_sink(self._placeholder)
        for chunk in chunks:
            self.digest.update(chunk)
            if self.sha is not None:
                self.sha.update(chunk)
            self._to_sink(chunk)

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on a closed file")


class PayloadReader(io.RawIOBase):
    """A read-only, seekable file over exactly a record's payload.

    Position 0 is the first payload byte and `seek(0, 2)` its end: a serializer
    that seeks (a Parquet footer, a zip directory) never sees header bytes.
    """

    def __init__(self, file: IO[bytes], start: int, size: int):
        super().__init__()
        self._file, self._start, self._size = file, start, size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence ({whence!r})")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self._size - self._pos)
        if n <= 0:
            return 0
        self._file.seek(self._start + self._pos)
        got = self._file.readinto(view[:n]) or 0
        self._pos += got
        return got

    @property
    def size(self) -> int:
        return self._size


class PayloadFile(io.BufferedReader):
    """What a serializer's `load` receives: a buffered, read-only, seekable payload.

    `local_file()` lets a format map the payload instead of reading it (numpy's
    memmap): (a binary file with a working `fileno()`, the payload's offset in it)
    when the payload lies in a local file whose bytes were verified - the record's
    own file, or stashflow's private verified copy - else None.
    """

    def local_file(self) -> tuple[IO[bytes], int] | None:
        raw = self.raw
        try:
            raw._file.fileno()
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return None
        return raw._file, raw._start

    @property
    def payload_size(self) -> int:
        return self.raw.size


def payload_file(file: IO[bytes], start: int, size: int) -> PayloadFile:
    """What a serializer's `load` receives for bytes [start, start + size) of `file`."""
    return PayloadFile(PayloadReader(file, start, size), buffer_size=LOAD_BUFFER)


__all__ = ["LOAD_BUFFER", "SPILL_BYTES", "PayloadFile", "PayloadReader", "PayloadWriter",
           "payload_file"]
