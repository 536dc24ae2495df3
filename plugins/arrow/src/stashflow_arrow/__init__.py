"""Data serializers: `parquet` (pandas, pyarrow and polars tables) and `npy` (numpy arrays).

pyarrow, numpy, pandas and polars are imported when a value is written or read,
never when the plugin loads. Neither format names code in its payload: a parquet
payload says which kind of table to rebuild with a word from a fixed list, and
an npy payload is never unpickled.
"""

from __future__ import annotations

from stashflow import hookimpl

from ._npy import NpySerializer
from ._parquet import ParquetSerializer

__all__ = ["NpySerializer", "ParquetSerializer"]


@hookimpl
def register_serializers(register):
    register(ParquetSerializer)
    register(NpySerializer)
