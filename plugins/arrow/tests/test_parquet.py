"""parquet: the kind marker, pandas round trips, records on local disk, refusals, damage, flows."""

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from stashflow import ResultStore, flow, task
from stashflow.cache_policies import INPUTS
from stashflow.exceptions import ResultCorrupted, SerializationError
from stashflow.payloads import PayloadWriter
from stashflow.records import STREAM_BYTES
from stashflow.registry import get_registry
from stashflow_arrow import ParquetSerializer
from stashflow_arrow._parquet import KIND_KEY


def big_frame() -> pd.DataFrame:
    """12 MB of numbers under a string index: past STREAM_BYTES, so streamed both ways."""
    rng = np.random.default_rng(0)
    rows = 300_000
    return pd.DataFrame({"x": rng.random(rows), "y": rng.random(rows), "n": rng.integers(0, 10**9, rows),
                         "day": pd.date_range("2026-01-01", periods=rows, freq="min", tz="UTC")},
                        index=pd.Index([f"row-{i}" for i in range(rows)], name="key"))


def payload(tmp_path, key: str) -> bytes:
    meta = ResultStore(tmp_path).read_metadata(key)
    return (tmp_path / key).read_bytes()[meta.header_size:]


def test_registered_by_the_entry_point():
    registry = get_registry()
    assert registry.serializers["parquet"] is ParquetSerializer
    assert registry.owner("serializer", "parquet") == "arrow"


def test_a_dataframe_round_trips_through_a_store_on_local_disk_with_its_index_and_dtypes(tmp_path):
    df = big_frame()
    meta = ResultStore(tmp_path, "parquet").write("frame", df)
    assert meta.size > STREAM_BYTES and meta.serializer == "parquet"
    got = ResultStore(tmp_path).read("frame")
    pd.testing.assert_frame_equal(got, df, check_exact=True, check_freq=False)
    assert got.index.name == "key" and got.dtypes.to_dict() == df.dtypes.to_dict()


def test_the_payload_is_a_parquet_file_that_names_its_kind_by_a_word(tmp_path):
    store = ResultStore(tmp_path, "parquet")
    store.write("pandas", pd.DataFrame({"a": [1]}))
    store.write("arrow", pa.table({"a": [1]}))
    for kind in ("pandas", "arrow"):
        data = payload(tmp_path, kind)
        assert data[:4] == data[-4:] == b"PAR1"
        assert pq.read_metadata(io.BytesIO(data)).metadata[KIND_KEY] == kind.encode()
    # an arrow table comes back as it was: no marker left in its schema
    assert store.read("arrow").schema.metadata is None


def test_an_arrow_table_keeps_its_own_schema_metadata():
    table = pa.table({"a": [1, 2]}, metadata={"source": "sensor-7"})
    got = ParquetSerializer().loads(ParquetSerializer().dumps(table))
    assert got.equals(table) and got.schema.metadata == {b"source": b"sensor-7"}


@pytest.mark.parametrize("kind", [b"os.system", b"pandas.DataFrame", b""])
def test_a_payload_naming_no_known_kind_is_refused(kind):
    table = pa.table({"a": [1]})
    if kind:
        table = table.replace_schema_metadata({KIND_KEY: kind})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    with pytest.raises(SerializationError, match="does not say what to rebuild"):
        ParquetSerializer().loads(buf.getvalue())


def test_the_writer_streams_into_a_file_that_cannot_seek():
    sink = io.BytesIO()
    writer = PayloadWriter(sink, placeholder=b"", sign=False)
    df = big_frame()
    ParquetSerializer().dump(df, writer)
    assert writer.length == sink.tell() > STREAM_BYTES  # spilled: written through, not held
    pd.testing.assert_frame_equal(ParquetSerializer().loads(sink.getvalue()), df, check_freq=False)


@pytest.mark.parametrize("value, hint", [
    ([1, 2], "pickle"), ({"a": [1]}, "pickle"), (pd.Series([1.0]), "to_frame"),
    (np.arange(3), "npy"), (pa.record_batch({"a": [1]}), "from_batches"),
])
def test_other_values_are_refused_naming_their_type_and_what_to_use(value, hint, tmp_path):
    store = ResultStore(tmp_path / "results", "parquet")
    with pytest.raises(SerializationError, match=rf"not [\w.]*{type(value).__name__};.*{hint}"):
        store.write("v", value)
    assert not store.exists("v")


def test_a_frame_parquet_cannot_hold_is_refused_naming_the_column():
    with pytest.raises(SerializationError, match="column mixed"):
        ParquetSerializer().dumps(pd.DataFrame({"mixed": [1, "a"]}))


def test_an_unknown_compression_is_refused():
    with pytest.raises(ValueError, match="unknown Parquet compression 'snap'"):
        ParquetSerializer(compression="snap")


def test_the_compression_is_what_any_reader_decodes():
    df = pd.DataFrame({"a": np.arange(10_000)})
    data = ParquetSerializer(compression="zstd").dumps(df)
    assert pq.read_metadata(io.BytesIO(data)).row_group(0).column(0).compression == "ZSTD"
    pd.testing.assert_frame_equal(ParquetSerializer().loads(data), df)


class _Raw(ParquetSerializer):
    """Writes prepared bytes as a parquet record."""

    streaming = False

    def dumps(self, obj):
        return obj


@pytest.mark.parametrize("size", ["small", "big"])
def test_an_intact_record_with_a_cut_parquet_file_is_a_serialization_error(size, tmp_path):
    df = big_frame() if size == "big" else pd.DataFrame({"a": range(1000)})
    data = ParquetSerializer(compression="none").dumps(df)
    for name, cut in (("no-footer", data[:-100]), ("no-head", data[100:]),
                      ("hole", data[: len(data) // 2] + bytes(len(data) - len(data) // 2 - 8) + data[-8:])):
        ResultStore(tmp_path, _Raw()).write(name, cut)
        with pytest.raises(SerializationError, match="parquet"):
            ResultStore(tmp_path).read(name)


@pytest.mark.parametrize("size", ["small", "big"])
def test_a_tampered_or_truncated_record_is_refused_before_decoding(size, tmp_path):
    df = big_frame() if size == "big" else pd.DataFrame({"a": range(1000)})
    ResultStore(tmp_path, "parquet").write("f", df)
    record = (tmp_path / "f").read_bytes()
    middle = len(record) // 2
    (tmp_path / "f").write_bytes(record[:middle] + bytes([record[middle] ^ 1]) + record[middle + 1:])
    with pytest.raises(ResultCorrupted, match="digest"):
        ResultStore(tmp_path).read("f")
    (tmp_path / "f").write_bytes(record[:middle])
    with pytest.raises(ResultCorrupted, match="truncated"):
        ResultStore(tmp_path).read("f")


def test_a_signed_store_reads_its_verified_copy(tmp_path):
    df = big_frame()
    ResultStore(tmp_path, "parquet", signing_key="k").write("f", df)
    got = ResultStore(tmp_path, signing_key="k").read("f")
    pd.testing.assert_frame_equal(got, df, check_freq=False)


def test_a_flow_run_twice_loads_the_frame_the_second_time(tmp_path):
    calls = []

    @task(result_serializer="parquet", result_storage=tmp_path, cache_policy=INPUTS)
    def report(rows: int) -> pd.DataFrame:
        calls.append(rows)
        return pd.DataFrame({"n": np.arange(rows), "sq": np.arange(rows) ** 2})

    @flow
    def pipeline():
        return report(1000, return_state=True)

    first, second = pipeline(), pipeline()
    assert (first.name, second.name) == ("Completed", "Cached") and calls == [1000]
    pd.testing.assert_frame_equal(second.result(), first.result())


def test_a_polars_frame_comes_back_as_polars(tmp_path):
    pl = pytest.importorskip("polars")
    df = pl.DataFrame({"a": [1, 2], "s": ["x", None]})
    ResultStore(tmp_path, "parquet").write("pl", df)
    got = ResultStore(tmp_path).read("pl")
    assert type(got) is pl.DataFrame and got.equals(df)
    assert pq.read_metadata(io.BytesIO(payload(tmp_path, "pl"))).metadata[KIND_KEY] == b"polars"


def test_a_polars_record_without_polars_says_what_to_install(tmp_path, monkeypatch):
    table = pa.table({"a": [1]}).replace_schema_metadata({KIND_KEY: b"polars"})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    monkeypatch.setitem(sys.modules, "polars", None)  # as if not installed
    with pytest.raises(SerializationError, match="pip install polars"):
        ParquetSerializer().loads(buf.getvalue())


def test_loading_the_plugin_imports_no_data_library():
    script = ("import sys\n"
              "from stashflow.registry import get_registry\n"
              "from stashflow.registry import resolve_serializer\n"
              "assert get_registry().serializers['parquet'] and resolve_serializer('npy')\n"
              "print(sorted(m for m in ('pyarrow', 'numpy', 'pandas', 'polars') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
