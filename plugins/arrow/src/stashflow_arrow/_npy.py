"""The `npy` serializer: numpy arrays in numpy's own .npy format, never pickled."""

from __future__ import annotations

import io
import math
from typing import IO, Any

from stashflow.exceptions import SerializationError
from stashflow.serializers import Serializer

_MAX_HEADER = 10_000  # numpy's max_header_size: the longest header it reads by default
_PEEK = 12 + 4 * _MAX_HEADER  # bytes that hold any header it reads
_READ = 4 * 1024 * 1024  # a payload that is not mapped is read this much at a time


def _check_array(obj: Any) -> None:
    import numpy as np

    if type(obj) is not np.ndarray and type(obj) is not np.memmap:
        cls = type(obj)
        name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
        hint = ("convert it with numpy.asarray()" if isinstance(obj, (np.ndarray, np.generic))
                else "use result_serializer='parquet' for tables, 'pickle' for other values")
        raise SerializationError(f"npy writes numpy arrays, not {name}; {hint}")
    if obj.dtype.hasobject:
        raise SerializationError(
            f"npy does not write arrays of dtype {obj.dtype} (Python objects, which .npy holds only "
            "pickled); use result_serializer='pickle' for them")


def _version(header: dict) -> tuple[int, int]:
    """The oldest .npy version that holds `header` (as numpy picks it, without its warning).

    A 1.0 or 2.0 header numpy would refuse to read back (past its 10,000-character
    limit: a structured dtype of hundreds of fields) is refused before anything is written.
    """
    from numpy.lib import format as npformat

    buf = io.BytesIO()
    try:
        npformat.write_array_header_1_0(buf, header)
        version, prefix = (1, 0), 10
    except UnicodeEncodeError:  # field names outside Latin-1: 3.0 is 2.0 in UTF-8
        return (3, 0)
    except ValueError:  # longer than version 1.0's 64 KiB
        buf = io.BytesIO()
        npformat.write_array_header_2_0(buf, header)
        version, prefix = (2, 0), 12
    if len(buf.getvalue()) - prefix > _MAX_HEADER:
        raise SerializationError(
            f"npy cannot describe dtype {header['descr']!r:.60} in the {_MAX_HEADER:,} characters "
            "numpy reads back; use result_serializer='pickle' for it")
    return version


def _read_header(file: IO[bytes]) -> tuple[tuple[int, ...], bool, Any]:
    """(shape, fortran_order, dtype) from a .npy header, leaving `file` at the first data byte."""
    from numpy.lib import format as npformat

    version = npformat.read_magic(file)
    if version == (1, 0):
        return npformat.read_array_header_1_0(file)
    if version == (2, 0):
        return npformat.read_array_header_2_0(file)
    if version == (3, 0):
        # 3.0 is 2.0 with a UTF-8 header, for which numpy has no public reader. Non-ASCII
        # characters only occur in field names, inside string literals, where their
        # \u escapes mean the same: the escaped header is a 2.0 header.
        length = file.read(4)
        if len(length) < 4 or int.from_bytes(length, "little") > _PEEK:
            raise ValueError("a version 3.0 header that is cut short or too long")
        text = file.read(int.from_bytes(length, "little")).decode("utf-8")
        ascii_header = text.encode("ascii", "backslashreplace")
        return npformat.read_array_header_2_0(
            io.BytesIO(len(ascii_header).to_bytes(4, "little") + ascii_header))
    raise ValueError(f"unsupported .npy format version {version}")


def _layout(file: IO[bytes], size: int) -> tuple[tuple[int, ...], str, Any, int]:
    """(shape, order, dtype, data offset) of the .npy payload of `size` bytes in `file`."""
    try:
        shape, fortran_order, dtype = _read_header(file)
    except (ValueError, EOFError, UnicodeDecodeError) as exc:
        raise SerializationError(f"not an npy payload: {exc}") from exc
    if dtype.hasobject:
        raise SerializationError(f"the npy payload holds Python objects (dtype {dtype}); stashflow "
                                 "never unpickles an npy payload")
    if any(n < 0 for n in shape):
        raise SerializationError(f"the npy payload's shape {shape} is not valid")
    offset = file.tell()
    data = math.prod(shape) * dtype.itemsize
    if offset + data != size:
        what = "is cut short" if offset + data > size else "has trailing bytes"
        raise SerializationError(f"the npy payload {what}: its header says {offset + data} bytes "
                                 f"({shape} of {dtype}), it has {size}")
    return shape, "F" if fortran_order else "C", dtype, offset


class NpySerializer(Serializer):
    """numpy arrays as .npy (no pickle: object arrays are refused)."""

    type = "npy"
    streaming = True

    def dump(self, obj: Any, file: IO[bytes]) -> None:
        _check_array(obj)
        from numpy.lib import format as npformat

        header = npformat.header_data_from_array_1_0(obj)
        npformat.write_array(file, obj, version=_version(header), allow_pickle=False)

    def dumps(self, obj: Any) -> bytes:
        buf = io.BytesIO()
        self.dump(obj, buf)
        return buf.getvalue()

    def loads(self, data: bytes | memoryview) -> Any:
        import numpy as np

        view = memoryview(data).cast("B")
        shape, order, dtype, offset = _layout(io.BytesIO(view[:_PEEK]), len(view))
        if dtype.itemsize == 0 or not len(view) - offset:
            return np.ndarray(shape, dtype, order=order)
        flat = np.frombuffer(view, np.uint8, offset=offset).view(dtype)
        return flat.reshape(shape, order=order).copy(order=order)

    def load(self, file: IO[bytes]) -> Any:
        """The array; a read-only np.memmap over the payload when it lies in a verified local file."""
        import numpy as np

        size = file.seek(0, io.SEEK_END)
        file.seek(0)
        shape, order, dtype, offset = _layout(file, size)
        if dtype.itemsize == 0 or size == offset:
            return np.ndarray(shape, dtype, order=order)
        local = getattr(file, "local_file", None)
        where = local() if local is not None else None
        if where is not None:
            raw, start = where
            return np.memmap(raw, dtype=dtype, mode="r", offset=start + offset, shape=shape,
                             order=order)
        flat = np.empty(size - offset, np.uint8)
        view, got = memoryview(flat), 0
        while got < len(view):
            n = file.readinto(view[got:got + _READ])
            if not n:
                raise SerializationError(f"the npy payload ended after {offset + got} of {size} bytes")
            got += n
        return flat.view(dtype).reshape(shape, order=order)
