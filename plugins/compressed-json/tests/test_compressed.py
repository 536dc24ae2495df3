"""compressed/json and compressed/pickle: codecs, the codec tag, records on disk."""

import importlib.util
import json
import zlib

import pytest
from stashflow import ResultStore
from stashflow.exceptions import SerializationError
from stashflow.plugins import get_registry
from stashflow_compressed import (
    CODECS,
    CompressedJSONSerializer,
    CompressedPickleSerializer,
    CompressedSerializer,
)

ROWS = {"rows": [{"id": i, "name": f"row {i}", "ok": i % 2 == 0} for i in range(2000)]}
CODEC_NAMES = [c for c in CODECS if c != "zstd" or importlib.util.find_spec("zstandard")]


def test_registered_by_the_entry_point():
    registry = get_registry()
    assert registry.serializers["compressed/json"] is CompressedJSONSerializer
    assert registry.serializers["compressed/pickle"] is CompressedPickleSerializer
    assert registry.owner("serializer", "compressed/json") == "compressed"


@pytest.mark.parametrize("codec", CODEC_NAMES)
def test_each_codec_round_trips_and_tags_its_payload(codec):
    ser = CompressedJSONSerializer(codec=codec)
    data = ser.dumps(ROWS)
    assert data[0] == CODECS[codec][0]
    assert len(data) < len(json.dumps(ROWS)) / 4
    assert ser.loads(data) == ROWS
    assert ser.loads(memoryview(data)) == ROWS
    # any instance reads it: the codec is named by the payload's first byte
    assert CompressedJSONSerializer().loads(data) == ROWS


def test_zlib_payload_is_plain_zlib_of_compact_json():
    data = CompressedJSONSerializer(level=9).dumps({"a": [1, 2]})
    assert data[0] == 1
    assert zlib.decompress(data[1:]) == b'{"a":[1,2]}'


def test_level_is_used():
    raw = json.dumps(ROWS, separators=(",", ":")).encode()
    for level in (1, 9):
        assert CompressedJSONSerializer(level=level).dumps(ROWS)[1:] == zlib.compress(raw, level)
    assert CompressedJSONSerializer().level == 6
    assert CompressedJSONSerializer(codec="lzma").level is None


@pytest.mark.parametrize("name, value", [
    ("compressed/json", ROWS),
    ("compressed/pickle", {"set": {1, 2}, "bytes": b"\x00" * 10_000, "tuple": (1, "a")}),
])
def test_records_on_disk_by_name(tmp_path, name, value):
    store = ResultStore(tmp_path, name)
    meta = store.write("r", value)
    assert meta.serializer == name
    assert ResultStore(tmp_path).read("r") == value
    assert (tmp_path / "r").stat().st_size == meta.header_size + meta.size
    assert meta.size < len(json.dumps(value, default=repr)) / 4


def test_an_lzma_record_reads_back_with_the_registered_default(tmp_path):
    ResultStore(tmp_path, CompressedPickleSerializer(codec="lzma")).write("r", ROWS)
    assert ResultStore(tmp_path).read("r") == ROWS
    assert ResultStore(tmp_path, "compressed/pickle").read("r") == ROWS


def test_wrapping_another_serializer():
    ser = CompressedSerializer("msgpack", codec="bz2")
    assert ser.type == "compressed/msgpack"
    assert ser.loads(ser.dumps({"b": b"\x01"})) == {"b": b"\x01"}
    assert CompressedSerializer(serializer=CompressedSerializer().serializer).type == "compressed/json"


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="unknown codec 'snappy'"):
        CompressedJSONSerializer(codec="snappy")
    with pytest.raises(ValueError, match="cannot wrap"):
        CompressedSerializer(CompressedJSONSerializer())


def test_bad_payloads_are_serialization_errors():
    ser = CompressedJSONSerializer()
    with pytest.raises(SerializationError, match="empty"):
        ser.loads(b"")
    with pytest.raises(SerializationError, match="codec tag 99"):
        ser.loads(bytes([99]) + b"junk")


def test_json_refuses_what_it_cannot_encode():
    with pytest.raises(SerializationError, match="json"):
        CompressedJSONSerializer().dumps({1, 2})


@pytest.mark.skipif(importlib.util.find_spec("zstandard") is not None, reason="zstandard installed")
def test_zstd_without_zstandard_says_what_to_install():
    with pytest.raises(SerializationError, match=r"stashflow-compressed-json\[zstd\]"):
        CompressedJSONSerializer(codec="zstd").dumps([1])
