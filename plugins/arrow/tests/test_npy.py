"""npy: arrays on local disk, memory-mapped loads, refusals, damaged records, cached flow runs."""

import io

import numpy as np
import pytest
from numpy.lib import format as npformat
from stashflow import ResultStore, flow, task
from stashflow.cache_policies import INPUTS
from stashflow.exceptions import ResultCorrupted, ResultSignatureError, SerializationError
from stashflow.records import STREAM_BYTES
from stashflow.registry import get_registry
from stashflow_arrow import NpySerializer

BIG = np.random.default_rng(0).random((1200, 1000))  # 9.6 MB: past STREAM_BYTES, so streamed


def mapped_files() -> str:
    with open("/proc/self/maps") as f:
        return f.read()


def test_registered_by_the_entry_point():
    registry = get_registry()
    assert registry.serializers["npy"] is NpySerializer
    assert registry.owner("serializer", "npy") == "arrow"


def test_the_payload_is_a_plain_npy_file(tmp_path):
    meta = ResultStore(tmp_path, "npy").write("a", np.arange(6, dtype="<i4").reshape(2, 3))
    payload = (tmp_path / "a").read_bytes()[meta.header_size:]
    assert payload.startswith(b"\x93NUMPY\x01\x00")
    assert np.load(io.BytesIO(payload), allow_pickle=False).tolist() == [[0, 1, 2], [3, 4, 5]]


def test_a_big_array_on_local_disk_loads_as_a_read_only_map_of_the_record(tmp_path):
    store = ResultStore(tmp_path, "npy")
    meta = store.write("big", BIG)
    assert meta.size > STREAM_BYTES
    got = store.read("big")
    assert type(got) is np.memmap and not got.flags.writeable
    np.testing.assert_array_equal(got, BIG, strict=True)
    assert str(tmp_path / "big") in mapped_files()  # the record file itself, not a copy
    with pytest.raises(ValueError, match="read-only"):
        got[0, 0] = 1.0
    copy = np.array(got)  # an ordinary array, in memory
    assert type(copy) is np.ndarray and copy.flags.writeable


def test_a_replaced_record_does_not_change_an_array_already_loaded(tmp_path):
    store = ResultStore(tmp_path, "npy")
    store.write("big", BIG)
    first = store.read("big")
    store.write("big", BIG + 1)  # a new file renamed over the old one
    np.testing.assert_array_equal(first, BIG)
    np.testing.assert_array_equal(store.read("big"), BIG + 1)
    store.delete("big")
    np.testing.assert_array_equal(first, BIG)


def test_a_signed_store_maps_its_private_verified_copy(tmp_path):
    store = ResultStore(tmp_path, "npy", signing_key="k")
    store.write("big", BIG)
    got = store.read("big")
    assert type(got) is np.memmap
    np.testing.assert_array_equal(got, BIG)
    assert str(tmp_path / "big") not in mapped_files()  # an unlinked copy, not the record


def test_small_arrays_load_into_memory(tmp_path):
    store = ResultStore(tmp_path, "npy")
    store.write("small", np.arange(100))
    got = store.read("small")
    assert type(got) is np.ndarray and got.flags.writeable and got.tolist() == list(range(100))


def test_a_file_that_is_not_local_is_read_into_memory():
    got = NpySerializer().load(io.BytesIO(NpySerializer().dumps(BIG)))
    assert type(got) is np.ndarray and got.flags.writeable
    np.testing.assert_array_equal(got, BIG, strict=True)


def test_a_fortran_ordered_array_maps_in_fortran_order(tmp_path):
    value = np.asfortranarray(BIG)
    ResultStore(tmp_path, "npy").write("f", value)
    got = ResultStore(tmp_path).read("f")
    assert type(got) is np.memmap and got.flags.f_contiguous
    np.testing.assert_array_equal(got, value)


@pytest.mark.parametrize("value", [np.array([{"a": 1}, None], dtype=object),
                                   np.zeros(2, dtype=[("x", "i4"), ("o", "O")])],
                         ids=["object", "object-field"])
def test_object_arrays_are_refused_and_nothing_is_written(value, tmp_path):
    store = ResultStore(tmp_path / "results", "npy")
    with pytest.raises(SerializationError, match="pickle"):
        store.write("obj", value)
    assert not store.exists("obj") and list((tmp_path / "results").rglob("*")) == []


@pytest.mark.parametrize("value, hint", [([1, 2, 3], "parquet"), (np.float64(2.0), "asarray"),
                                         (np.ma.array([1, 2]), "asarray")])
def test_other_values_are_refused_naming_their_type_and_what_to_use(value, hint):
    with pytest.raises(SerializationError, match=rf"not [\w.]*{type(value).__name__};.*{hint}"):
        NpySerializer().dumps(value)


def _object_payload() -> bytes:
    """An .npy file of an object array (a pickle inside), as np.save writes it."""
    buf = io.BytesIO()
    npformat.write_array(buf, np.array([1, "a"], dtype=object), allow_pickle=True)
    return buf.getvalue()


class _Raw(NpySerializer):
    """Writes prepared bytes as an npy record."""

    streaming = False

    def dumps(self, obj):
        return obj


@pytest.mark.parametrize("size", ["small", "big"])
def test_a_pickled_npy_payload_is_never_unpickled(size, tmp_path, monkeypatch):
    import pickle

    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    payload = _object_payload()
    if size == "big":
        payload += bytes(STREAM_BYTES)  # the loader refuses the dtype before reading on
    ResultStore(tmp_path, _Raw()).write("obj", payload)
    with pytest.raises(SerializationError, match="Python objects"):
        ResultStore(tmp_path).read("obj")


@pytest.mark.parametrize("size", ["small", "big"])
def test_an_intact_record_with_a_cut_payload_is_a_serialization_error(size, tmp_path):
    value = BIG if size == "big" else np.arange(1000)
    data = NpySerializer().dumps(value)
    ResultStore(tmp_path, _Raw()).write("cut", data[:-8])  # valid record, short array
    with pytest.raises(SerializationError, match="cut short"):
        ResultStore(tmp_path).read("cut")


@pytest.mark.parametrize("size", ["small", "big"])
def test_a_tampered_or_truncated_record_is_refused_before_decoding(size, tmp_path):
    value = BIG if size == "big" else np.arange(1000)
    ResultStore(tmp_path, "npy").write("a", value)
    record = (tmp_path / "a").read_bytes()
    (tmp_path / "a").write_bytes(record[:-100] + bytes(100))
    with pytest.raises(ResultCorrupted, match="digest"):
        ResultStore(tmp_path).read("a")
    (tmp_path / "a").write_bytes(record[:-100])
    with pytest.raises(ResultCorrupted, match="truncated"):
        ResultStore(tmp_path).read("a")


def test_a_tampered_signed_record_is_refused(tmp_path):
    ResultStore(tmp_path, "npy", signing_key="k").write("a", BIG)
    record = bytearray((tmp_path / "a").read_bytes())
    record[-1] ^= 1
    (tmp_path / "a").write_bytes(bytes(record))
    with pytest.raises(ResultSignatureError):
        ResultStore(tmp_path, signing_key="k").read("a")


def test_a_header_claiming_more_than_the_payload_is_refused_without_allocating():
    header = io.BytesIO()
    npformat.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                             "shape": (10**12,)})
    with pytest.raises(SerializationError, match="cut short"):
        NpySerializer().loads(header.getvalue() + bytes(64))


def test_a_flow_run_twice_loads_the_array_the_second_time(tmp_path):
    calls = []

    @task(result_serializer="npy", result_storage=tmp_path, cache_policy=INPUTS)
    def grid(n: int) -> np.ndarray:
        calls.append(n)
        return np.random.default_rng(n).random((n, 1000))

    @flow
    def pipeline():
        return grid(1200, return_state=True)

    first, second = pipeline(), pipeline()
    assert (first.name, second.name) == ("Completed", "Cached") and calls == [1200]
    np.testing.assert_array_equal(second.result(), first.result())
    assert type(second.result()) is np.memmap
