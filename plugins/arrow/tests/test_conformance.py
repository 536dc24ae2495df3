"""parquet and npy pass the plugin authors' kit, with values past 8 MiB (the streamed path)."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from stashflow.testing import SerializerTests
from stashflow_arrow import NpySerializer, ParquetSerializer

BIG_ROWS = 1_500_000  # 12 MB of random float64: a payload past the 8 MiB streaming threshold


def frames() -> list[pd.DataFrame]:
    rng = np.random.default_rng(1)
    return [
        pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None], "c": [1.5, np.nan, 3.0]}),
        pd.DataFrame({"v": [1, 2]}, index=pd.Index(["r1", "r2"], name="row")),
        pd.DataFrame({"v": [1.0, 2.0]},
                     index=pd.DatetimeIndex(["2026-01-01", "2026-03-01"], tz="Europe/Oslo")),
        pd.DataFrame({"v": range(5)}, index=pd.RangeIndex(10, 20, 2)),
        pd.DataFrame({"v": [1, 2]},
                     index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"])),
        pd.DataFrame({"cat": pd.Categorical(["a", "b", "a"]),
                      "i": pd.array([1, None, 3], dtype="Int64"),
                      "flag": pd.array([True, None, False], dtype="boolean"),
                      "u": np.array([1, 2, 3], dtype=np.uint32),
                      "t": pd.to_timedelta([1, 2, 3], unit="s")}),
        pd.DataFrame({0: [1], 1: [2]}),
        pd.DataFrame(),
        pd.DataFrame({"x": rng.random(40), "y": rng.integers(0, 9, 40)}),
    ]


def tables() -> list[pa.Table]:
    return [
        pa.table({"a": [1, 2], "d": pa.array(["x", "y"]).dictionary_encode(),
                  "ts": pa.array([1, 2], pa.timestamp("ns", "UTC")), "s": [{"x": 1}, {"x": 2}],
                  "ls": pa.array(["a", None], pa.large_string())}, metadata={"owner": "me"}),
        pa.table({"x": pa.array([], pa.float32())}),
    ]


class TestParquet(SerializerTests):
    @pytest.fixture
    def serializer(self):
        return ParquetSerializer()

    @pytest.fixture
    def values(self):
        return [*frames(), *tables()]

    @pytest.fixture
    def large_values(self):
        rng = np.random.default_rng(2)
        return [pd.DataFrame({"x": rng.random(BIG_ROWS)}, index=pd.RangeIndex(0, 2 * BIG_ROWS, 2)),
                pa.table({"x": rng.random(BIG_ROWS)})]

    @pytest.fixture
    def unsupported_values(self):
        return [[1, 2], {"a": [1]}, None, pd.Series([1, 2]), np.arange(3),
                pa.record_batch({"a": [1]}), pd.DataFrame({"mixed": [1, "a"]}),
                pd.DataFrame([[1, 2]], columns=["a", "a"])]

    def assert_same(self, loaded, original):
        assert type(loaded) is type(original)
        if isinstance(original, pd.DataFrame):
            pd.testing.assert_frame_equal(loaded, original, check_exact=True)
        else:
            assert loaded.equals(original)
            assert loaded.schema.metadata == original.schema.metadata


class TestParquetZstd(TestParquet):
    @pytest.fixture
    def serializer(self):
        return ParquetSerializer(compression="zstd")


class TestParquetPolars(SerializerTests):
    @pytest.fixture
    def serializer(self):
        return ParquetSerializer()

    @pytest.fixture
    def values(self):
        pl = pytest.importorskip("polars")
        return [pl.DataFrame({"a": [1, 2, None], "s": ["x", None, "z"],
                              "c": pl.Series(["u", "v", "u"], dtype=pl.Categorical),
                              "l": [[1], [], None]})]

    @pytest.fixture
    def large_values(self):
        pl = pytest.importorskip("polars")
        return [pl.DataFrame({"x": np.random.default_rng(3).random(BIG_ROWS)})]

    def assert_same(self, loaded, original):
        from polars.testing import assert_frame_equal

        assert type(loaded) is type(original)
        assert_frame_equal(loaded, original)


def arrays() -> list[np.ndarray]:
    return [
        np.arange(10), np.zeros((0, 3)), np.array(3.5), np.arange(10)[::3],
        np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        np.array([b"ab", b"c"]), np.array(["x", "yz"]), np.array([np.nan, np.inf, -0.0]),
        np.zeros(3, dtype=[("name", "U4"), ("score", "<f8"), ("\u540d\u524d", "<i2")]),
        np.array(["2026-01-01", "NaT"], dtype="M8[ns]"), np.ones((2, 2), dtype=bool),
        np.arange(6, dtype=">i4").reshape(2, 3), np.arange(4, dtype=np.complex128),
    ]


class TestNpy(SerializerTests):
    @pytest.fixture
    def serializer(self):
        return NpySerializer()

    @pytest.fixture
    def values(self):
        return arrays()

    @pytest.fixture
    def large_values(self):
        rng = np.random.default_rng(4)
        return [rng.random((1000, 1500)),  # 12 MB: streamed, and mapped from a local file
                np.asfortranarray(rng.random((1500, 1000))),
                np.zeros(1_000_000, dtype=[("id", "<i8"), ("at", "M8[ns]")])]

    @pytest.fixture
    def unsupported_values(self):
        return [np.array([1, "a"], dtype=object), np.zeros(2, dtype=[("o", "O")]),
                np.array(["a"], dtype=np.dtypes.StringDType()), [1, 2], np.float64(1.0),
                np.ma.array([1, 2], mask=[0, 1]), pd.DataFrame({"a": [1]})]

    def assert_same(self, loaded, original):
        assert isinstance(loaded, np.ndarray) and type(loaded) in (np.ndarray, np.memmap)
        assert loaded.dtype == original.dtype and loaded.shape == original.shape
        assert loaded.flags.f_contiguous == original.flags.f_contiguous or original.ndim < 2
        np.testing.assert_array_equal(loaded, original, strict=True)
