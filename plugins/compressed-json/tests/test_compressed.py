"""compressed/json and compressed/pickle: codecs, the codec tag, records on disk."""

import importlib.util
import json
import subprocess
import sys
import textwrap
import zlib

import pytest
from stashflow import ResultStore
from stashflow.exceptions import DecodeLimitExceeded, SerializationError
from stashflow.registry import get_registry
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


def test_json_refuses_what_it_cannot_encode_and_keeps_the_types_it_tags():
    with pytest.raises(SerializationError, match="json serializer cannot encode object"):
        CompressedJSONSerializer().dumps([object()])
    s = CompressedJSONSerializer()
    assert s.loads(s.dumps({"ids": {1, 2}, "raw": b"\x00"})) == {"ids": {1, 2}, "raw": b"\x00"}


def test_zstd_without_zstandard_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "zstandard", None)  # as if not installed
    with pytest.raises(SerializationError, match=r"stashflow-compressed-json\[zstd\]"):
        CompressedJSONSerializer(codec="zstd").dumps([1])


# -- bounded decompression ----------------------------------------------------------------


def _bomb(codec: str, size: int) -> bytes:
    """A payload (tag + stream) that decompresses to `size` zero bytes, built in pieces."""
    chunk = bytes(1024 * 1024)
    if codec == "zlib":
        packer = zlib.compressobj(9)
    elif codec == "zstd":
        import zstandard

        packer = zstandard.ZstdCompressor(level=19).compressobj()
    else:
        module = __import__(codec)
        packer = module.BZ2Compressor(9) if codec == "bz2" else module.LZMACompressor()
    parts = [packer.compress(chunk) for _ in range(size // len(chunk))]
    parts.append(packer.flush())
    return bytes([CODECS[codec][0]]) + b"".join(parts)


class _Raw(CompressedJSONSerializer):
    """Writes a prepared payload as a compressed/json record."""

    def dumps(self, obj):
        return obj


def test_a_decompression_bomb_is_refused_with_a_typed_error_and_bounded_memory(tmp_path):
    bomb = _bomb("zlib", 256 * 1024 * 1024)
    assert len(bomb) < 300 * 1024  # a 255 KiB record claiming 256 MiB: over 1000:1
    ResultStore(tmp_path, _Raw()).write("bomb", bomb)
    script = textwrap.dedent("""
        import json, sys
        from stashflow import ResultStore
        from stashflow.exceptions import DecodeLimitExceeded
        def peak():  # VmHWM: this process's own peak RSS
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
        store = ResultStore(sys.argv[1])
        store.read_metadata("bomb")
        base = peak()
        try:
            store.read("bomb")
            error = None
        except DecodeLimitExceeded as exc:
            error = str(exc)
        print(json.dumps({"error": error, "growth": peak() - base}))
    """)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert "STASHFLOW_RESULTS_MAX_COMPRESSION_RATIO" in got["error"] and "'bomb'" in got["error"]
    # decoding stopped at the ratio's limit: it never held the 256 MiB the bomb claims
    assert got["growth"] <= 1000 * len(bomb) + 16 * 1024 * 1024, got


@pytest.mark.parametrize("codec", CODEC_NAMES)
def test_every_codec_stops_at_the_size_limit(codec, tmp_path, monkeypatch):
    monkeypatch.setenv("STASHFLOW_RESULTS_MAX_DECOMPRESSED_SIZE", "4MiB")
    store = ResultStore(tmp_path, _Raw())
    store.write("big", _bomb(codec, 8 * 1024 * 1024))
    with pytest.raises(DecodeLimitExceeded, match="4194304"):
        ResultStore(tmp_path).read("big")


@pytest.mark.parametrize("codec", CODEC_NAMES)
def test_limits_can_be_raised_per_serializer(codec):
    ser = CompressedJSONSerializer(codec=codec, max_decompressed_size=1024)
    data = ser.dumps("x" * 5000)
    with pytest.raises(DecodeLimitExceeded):
        ser.loads(data)
    assert CompressedJSONSerializer(codec=codec, max_decompressed_size=10_000).loads(data) == "x" * 5000


def test_very_repetitive_small_values_are_not_mistaken_for_bombs(tmp_path):
    zeros = [0] * 3_000_000  # 6 MB of JSON, compressed well past 1000:1
    store = ResultStore(tmp_path, CompressedJSONSerializer(codec="bz2"))
    store.write("zeros", zeros)
    assert store.storage.stat("zeros")["size"] * 1000 < 6_000_000
    assert ResultStore(tmp_path).read("zeros") == zeros


@pytest.mark.parametrize("codec", CODEC_NAMES)
def test_a_truncated_stream_is_a_serialization_error(codec):
    data = CompressedJSONSerializer(codec=codec).dumps(ROWS)
    with pytest.raises(SerializationError):
        CompressedJSONSerializer().loads(data[: len(data) // 2])


def test_the_limits_are_settings_listed_by_config_view():
    from click.testing import CliRunner
    from stashflow.cli import main

    out = CliRunner().invoke(main, ["config", "view"]).output
    assert "STASHFLOW_RESULTS_MAX_DECOMPRESSED_SIZE=1073741824" in out
    assert "STASHFLOW_RESULTS_MAX_COMPRESSION_RATIO=1000" in out


def test_prefect_spelling_of_the_codec_and_the_import_path_prefect_users_write():
    from stashflow.serializers import CompressedSerializer

    s = CompressedSerializer(serializer="pickle", compressionlib="lzma")
    assert s.codec == "lzma" and s.type == "compressed/pickle"
    assert s.loads(s.dumps({"a": (1, 2)})) == {"a": (1, 2)}
    with pytest.raises(ValueError, match="codec='bz2' and compressionlib='lzma' disagree"):
        CompressedSerializer(codec="bz2", compressionlib="lzma")
