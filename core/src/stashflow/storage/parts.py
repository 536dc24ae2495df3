"""Data cut into upload parts (for backend authors).

A service that takes big objects in parts (S3 multipart uploads, GCS resumable
uploads, Azure staged blocks) sends small data in one request and big data
part by part. `single_or_parts(data, part_size)` makes that choice having read
at most two parts, and `iter_parts` does the cutting: bytes are sliced without
copying, a file is read one part at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import IO

from .base import BytesOrFile

Part = bytes | bytearray | memoryview


def iter_parts(data: BytesOrFile, part_size: int) -> Iterator[Part]:
    """`data` in parts of `part_size` bytes, the last one shorter (one empty part if it is empty).

    A file is read from where it stands, one part at a time, each part full until
    the end of the file (raw streams and pipes may read short): only the part
    being handed out is in memory.
    """
    if part_size < 1:
        raise ValueError(f"part_size must be at least 1, not {part_size!r}")
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data).cast("B")
        return (view[start:start + part_size] for start in range(0, max(len(view), 1), part_size))
    return _file_parts(data, part_size)


def single_or_parts(data: BytesOrFile, part_size: int) -> tuple[Part | None, Iterator[Part] | None]:
    """`(part, None)` if `data` fits in one part (send it in one request), else `(None, its parts)`.

    The parts are those of `iter_parts`, none of them empty. A file is read only
    as far as the choice needs: its first part, and the second if the first is full.
    """
    parts = iter_parts(data, part_size)
    first = next(parts)
    if len(first) < part_size:
        return first, None
    second = next(parts, None)
    if second is None:
        return first, None
    return None, itertools.chain((first, second), parts)


def _file_parts(file: IO[bytes], part_size: int) -> Iterator[Part]:
    part = _read_part(file, part_size)
    yield part
    while len(part) == part_size:
        part = _read_part(file, part_size)
        if not part:
            return
        yield part


def _read_part(file: IO[bytes], size: int) -> Part:
    part = file.read(size)
    if not part or len(part) >= size:
        return part
    buf = bytearray(part)  # a short read is not the end of a file: read on, appending in place
    while len(buf) < size:
        more = file.read(size - len(buf))
        if not more:
            break
        buf += more
    return buf


__all__ = ["iter_parts", "single_or_parts"]
