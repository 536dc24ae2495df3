"""The `parquet` serializer: tables as Parquet, written and read by pyarrow."""

from __future__ import annotations

import io
import mmap
import sys
from typing import IO, Any

from stashflow.exceptions import SerializationError
from stashflow.serializers import Serializer

# The Parquet key-value metadata entry naming what to rebuild: a word from KINDS,
# never anything that names code to import.
KIND_KEY = b"stashflow.kind"
KINDS = ("pandas", "arrow", "polars")
COMPRESSIONS = ("snappy", "zstd", "gzip", "brotli", "lz4", "none")


def _kind(obj: Any) -> str | None:
    """Which of KINDS `obj` is; a library that is not imported cannot have made it."""
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(obj, pd.DataFrame):
        return "pandas"
    pa = sys.modules.get("pyarrow")
    if pa is not None and isinstance(obj, pa.Table):
        return "arrow"
    pl = sys.modules.get("polars")
    if pl is not None and isinstance(obj, pl.DataFrame):
        return "polars"
    return None


def _refuse(obj: Any) -> SerializationError:
    cls = type(obj)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    if cls.__name__ == "Series":
        hint = "make it a frame first (series.to_frame())"
    elif cls.__name__ == "LazyFrame":
        hint = "collect() it first"
    elif cls.__name__ == "RecordBatch":
        hint = "make it a table first (pyarrow.Table.from_batches([batch]))"
    elif cls.__name__ == "ndarray":
        hint = "use result_serializer='npy' for numpy arrays"
    else:
        hint = "use result_serializer='pickle' (or 'json') for other values"
    return SerializationError(
        f"parquet writes pandas DataFrames, pyarrow Tables and polars DataFrames, not {name}; {hint}")


def _table(obj: Any, kind: str) -> Any:
    import pyarrow as pa

    try:
        if kind == "pandas":
            table = pa.Table.from_pandas(obj)  # the index and dtypes go into its pandas metadata
        elif kind == "polars":
            table = obj.to_arrow()
        else:
            table = obj
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise SerializationError(f"parquet cannot hold this {kind} frame: {exc}; "
                                 "use result_serializer='pickle' for it") from exc
    return table.replace_schema_metadata({**(table.schema.metadata or {}), KIND_KEY: kind.encode()})


def _read(buffer: Any) -> Any:
    """The table in a Parquet file held in a pyarrow buffer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(buffer))
    except pa.ArrowException as exc:
        raise SerializationError(f"the parquet payload is damaged: {exc}") from exc


def _read_file(file: IO[bytes]) -> Any:
    """The table in the payload `file`, read from memory pyarrow owns.

    pyarrow is never handed the Python file itself: it would read it from its own
    threads, and after a failed or pre-buffered read those threads abort or hang the
    interpreter at exit (apache/arrow#34314). A payload in a local file (what
    PayloadFile.local_file() gives) is mapped instead, which is also the fastest way
    in; any other file is read into memory.
    """
    import pyarrow as pa

    local = getattr(file, "local_file", None)
    where = local() if local is not None else None
    size = file.seek(0, io.SEEK_END)
    if where is None or not size:
        file.seek(0)
        return _read(pa.py_buffer(file.read()))
    raw, start = where
    # Unmapped when the last buffer over it goes: the table read from it owns its memory.
    mapped = mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ)
    return _read(pa.py_buffer(mapped).slice(start, size))


class ParquetSerializer(Serializer):
    """pandas DataFrames, pyarrow Tables and polars DataFrames as one Parquet file."""

    type = "parquet"
    streaming = True

    def __init__(self, compression: str = "snappy"):
        if compression not in COMPRESSIONS:
            raise ValueError(f"unknown Parquet compression {compression!r}; "
                             f"choose one of {', '.join(COMPRESSIONS)}")
        self.compression = compression

    def dump(self, obj: Any, file: IO[bytes]) -> None:
        kind = _kind(obj)
        if kind is None:
            raise _refuse(obj)
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = _table(obj, kind)
        try:
            # Parquet is written front to back, footer last: `file` need not seek.
            pq.write_table(table, file, compression=self.compression)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise SerializationError(f"parquet cannot hold this {kind} frame: {exc}; "
                                     "use result_serializer='pickle' for it") from exc

    def dumps(self, obj: Any) -> bytes:
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        self.dump(obj, sink)
        return sink.getvalue().to_pybytes()

    def load(self, file: IO[bytes]) -> Any:
        return self._rebuild(_read_file(file))

    def loads(self, data: bytes | memoryview) -> Any:
        import pyarrow as pa

        return self._rebuild(_read(pa.py_buffer(data)))

    def _rebuild(self, table: Any) -> Any:
        metadata = dict(table.schema.metadata or {})
        kind = metadata.pop(KIND_KEY, b"").decode("utf-8", "replace")
        if kind not in KINDS:
            raise SerializationError(
                f"the parquet payload does not say what to rebuild (kind {kind!r}); it was not "
                "written by stashflow's parquet serializer, or by a newer stashflow-arrow")
        table = table.replace_schema_metadata(metadata or None)
        if kind == "arrow":
            return table
        try:
            if kind == "pandas":
                return table.to_pandas()
            import polars
        except ImportError as exc:
            raise SerializationError(f"this parquet record holds a {kind} DataFrame, and {kind} "
                                     f"is not installed: pip install {kind} ({exc})") from None
        return polars.from_arrow(table)
