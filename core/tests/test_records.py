"""The record format: raw payload after a small header, verified before anything is
decoded. Damage of any kind raises ResultCorrupted and nothing is deserialized."""

import io
import os
import pickle
import struct
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import xxhash
from stashflow import ResultStore, records
from stashflow.exceptions import (
    ResultCorrupted,
    ResultNotFound,
    ResultSignatureError,
    SerializationError,
    SerializerNotFound,
    UntrustedSerializer,
)
from stashflow.serializers import Serializer

BIG = 20 * 1024 * 1024  # past records.STREAM_BYTES: verified in place, then streamed


class Boom:
    """Unpickling this creates a file: proof that a payload was deserialized."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _files(top: Path) -> set[str]:
    return {os.path.join(d, f) for d, _, fs in os.walk(top) for f in fs}


def _reseal(data: bytes) -> bytes:
    """Recompute the payload digest and header CRC, as a forger would."""
    data = bytearray(data)
    (hsize,) = struct.unpack_from("<H", data, 6)
    data[32:48] = xxhash.xxh3_128_digest(bytes(data[hsize:]))
    data[hsize - 4:hsize] = struct.pack("<I", zlib.crc32(data[:hsize - 4]))
    return bytes(data)


@pytest.fixture
def boom(tmp_path):
    """(store, record path, marker path, record bytes): a pickle record whose decoding
    creates the marker."""
    markers = tmp_path / "markers"
    markers.mkdir()
    marker = markers / "deserialized"
    store = ResultStore(tmp_path / "root", "pickle")
    store.write("boom", Boom(marker))
    path = tmp_path / "root" / "boom"
    return store, path, marker, path.read_bytes()


VALUES = {
    "pickle": {"a": [1, 2.5, None], "b": (1, 2), "c": {3, 4}, "d": b"\x00\xff"},
    "json": {"a": [1, 2.5, None, True], "s": "caf\u00e9"},
    "msgpack": {"a": [1, 2.5, None], "b": b"\x00\xff", 7: "int key"},
    "compressed/json": {"rows": [{"x": i} for i in range(200)]},
    "compressed/pickle": {"rows": [(i, str(i)) for i in range(200)], "s": {1, 2}},
}


@pytest.mark.parametrize("name", list(VALUES))
def test_round_trip_and_metadata_for_each_serializer(tmp_path, name):
    store = ResultStore(tmp_path, name)
    before = datetime.now(UTC)
    written = store.write("r", VALUES[name])
    record = store.read_record("r")
    assert record.value == VALUES[name]
    meta = record.metadata
    assert meta == written
    assert meta.serializer == name
    assert before - timedelta(seconds=1) <= meta.created <= datetime.now(UTC)
    assert meta.expiration is None
    data = (tmp_path / "r").read_bytes()
    assert data[:4] == records.MAGIC
    assert len(data) == meta.header_size + meta.size
    assert meta.header_size < 1024


def test_payload_is_stored_raw_after_the_header(tmp_path):
    store = ResultStore(tmp_path, "json")
    meta = store.write("j", {"a": "caf\u00e9"})
    assert (tmp_path / "j").read_bytes()[meta.header_size:] == b'{"a":"caf\xc3\xa9"}'
    blob = os.urandom(100_000)
    meta = ResultStore(tmp_path, "pickle").write("p", blob)
    data = (tmp_path / "p").read_bytes()
    assert blob in data  # not base64, not escaped
    assert len(data) - len(blob) < 128


def test_expiration_is_stored_and_an_expired_record_is_a_miss_never_decoded(boom, tmp_path):
    store, _path, marker, _ = boom
    meta = store.write("soon", 1, expiration=timedelta(hours=1))
    assert meta.expiration is not None
    assert store.read_metadata("soon").expiration == meta.expiration
    assert abs((meta.expiration - meta.created) - timedelta(hours=1)) < timedelta(seconds=1)
    assert store.write("secs", 1, expiration=60).expiration - timedelta(seconds=60) <= datetime.now(UTC)
    store.write("gone", Boom(marker), expiration=timedelta(seconds=-1))
    with pytest.raises(ResultNotFound):
        store.read("gone")
    assert store.exists("gone")
    assert not store.is_valid("gone")
    assert not marker.exists()
    naive = datetime.now() + timedelta(days=1)
    assert store.write("naive", 1, expiration=naive).expiration.tzinfo is not None


def test_header_is_readable_when_the_payload_is_garbage_or_absent(tmp_path):
    store = ResultStore(tmp_path, "json")
    meta = store.write("r", list(range(1000)))
    path = tmp_path / "r"
    data = path.read_bytes()
    path.write_bytes(data[:meta.header_size] + os.urandom(meta.size))
    assert store.read_metadata("r") == meta
    with pytest.raises(ResultCorrupted, match="digest"):
        store.read("r")
    path.write_bytes(data[:meta.header_size])
    assert store.read_metadata("r") == meta
    assert store.is_valid("r")
    with pytest.raises(ResultCorrupted, match="truncated"):
        store.read("r")


class _CountingReader(io.RawIOBase):
    def __init__(self, data: bytes):
        self._inner = io.BytesIO(data)
        self.consumed = 0

    def readable(self):
        return True

    def readinto(self, b):
        n = self._inner.readinto(b)
        self.consumed += n
        return n


def test_reading_a_header_never_reads_the_payload():
    buf = io.BytesIO()
    meta = records.write_record(buf, b"x" * 1_000_000, _pickle(), created=datetime.now(UTC))
    reader = _CountingReader(buf.getvalue())
    got, head = records.read_header(reader, "k")
    assert got == meta
    assert reader.consumed == meta.header_size == len(head)


def _pickle() -> Serializer:
    from stashflow.registry import resolve_serializer

    return resolve_serializer("pickle")


def test_an_intact_boom_record_really_does_run_code_when_decoded(boom):
    """The control for the tests below: their payload is dangerous if decoded."""
    store, _path, marker, _ = boom
    store.read("boom")
    assert marker.exists()


def test_truncation_at_every_offset_is_corruption_and_nothing_is_decoded(boom, tmp_path):
    store, path, marker, data = boom
    before = _files(tmp_path)
    header_size = store.read_metadata("boom").header_size
    for n in range(len(data)):
        path.write_bytes(data[:n])
        with pytest.raises(ResultCorrupted):
            store.read("boom")
        if n < header_size:
            with pytest.raises(ResultCorrupted):
                store.read_metadata("boom")
    path.write_bytes(data + b"\x00")
    with pytest.raises(ResultCorrupted, match="trailing"):
        store.read("boom")
    assert not marker.exists()
    assert _files(tmp_path) == before


@pytest.mark.parametrize("mask", [0xFF, 0x01, 0x80])
def test_a_flipped_byte_at_every_offset_is_corruption_and_nothing_is_decoded(boom, tmp_path, mask):
    store, path, marker, data = boom
    before = _files(tmp_path)
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= mask
        path.write_bytes(damaged)
        with pytest.raises(ResultCorrupted):
            store.read("boom")
    assert not marker.exists()
    assert _files(tmp_path) == before


def test_reseal_without_a_signing_key_is_what_the_digest_cannot_catch(boom):
    """Documents the threat model: without a signing key, a forger who recomputes the
    digest is trusted; with one (below) they are not."""
    store, path, marker, data = boom
    path.write_bytes(_reseal(data))
    store.read("boom")
    assert marker.exists()


def test_not_a_record_at_all(tmp_path):
    store = ResultStore(tmp_path)
    for content, match in [(b"", "truncated header"), (b"hello world" * 20, "bad magic"),
                           (pickle.dumps({"a": 1}), "bad magic")]:
        (tmp_path / "r").write_bytes(content)
        with pytest.raises(ResultCorrupted, match=match):
            store.read("r")


def test_a_newer_format_version_says_to_upgrade(tmp_path):
    store = ResultStore(tmp_path)
    store.write("r", 1)
    data = bytearray((tmp_path / "r").read_bytes())
    data[4] = 2
    (tmp_path / "r").write_bytes(_reseal(data))
    with pytest.raises(ResultCorrupted, match="upgrade stashflow"):
        store.read("r")


def test_a_header_claiming_a_huge_payload_is_refused_without_allocating_it(tmp_path):
    store = ResultStore(tmp_path, "json")
    meta = store.write("r", [1, 2])
    data = bytearray((tmp_path / "r").read_bytes())
    struct.pack_into("<Q", data, 24, 2**50)
    forged = _reseal(data[:meta.header_size]) + bytes(data[meta.header_size:])
    (tmp_path / "r").write_bytes(forged)
    with pytest.raises(ResultCorrupted, match="truncated"):
        store.read("r")

    class Pipe(io.RawIOBase):  # not seekable: the size cannot be asked
        def __init__(self, b):
            self._b = io.BytesIO(b)

        def readable(self):
            return True

        def readinto(self, b):
            return self._b.readinto(b)

    with pytest.raises(ResultCorrupted, match="truncated"):
        records.read_record(io.BufferedReader(Pipe(forged)), "r", lambda m: _pickle())


def test_an_intact_record_that_cannot_be_decoded_is_a_serialization_error(tmp_path):
    class Raw(Serializer):
        type = "pickle"

        def dumps(self, obj):
            return obj

    store = ResultStore(tmp_path, Raw())
    store.write("r", b"cno_such_module_xyz\nThing\n.")
    with pytest.raises(SerializationError, match="intact"):
        ResultStore(tmp_path).read("r")


# -- the streaming path (payload > 8 MiB) ----------------------------------------------


@pytest.fixture
def big_boom(tmp_path, monkeypatch):
    calls = []
    real = records._verify_mapped
    monkeypatch.setattr(records, "_verify_mapped", lambda *a, **k: (calls.append(1), real(*a, **k)))
    marker = tmp_path / "big-marker"
    store = ResultStore(tmp_path / "root", "pickle")
    meta = store.write("big", (os.urandom(BIG), Boom(marker)))
    path = tmp_path / "root" / "big"
    assert meta.size > records.STREAM_BYTES
    return store, path, marker, calls


def test_large_record_round_trips_through_the_streaming_path(big_boom):
    store, _path, marker, calls = big_boom
    value = store.read("big")
    assert len(value[0]) == BIG
    assert calls == [1]
    assert marker.exists()


def test_large_record_with_a_byte_flipped_deep_inside_is_not_decoded(big_boom):
    store, path, marker, calls = big_boom
    with open(path, "r+b") as f:
        f.seek(BIG // 2)
        byte = f.read(1)
        f.seek(BIG // 2)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(ResultCorrupted, match="digest"):
        store.read("big")
    assert calls == [1]
    assert not marker.exists()


def test_large_record_truncated_or_extended_is_not_decoded(big_boom):
    store, path, marker, _calls = big_boom
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 1)
    with pytest.raises(ResultCorrupted, match="truncated"):
        store.read("big")
    with open(path, "ab") as f:
        f.write(b"\x00\x00")
    with pytest.raises(ResultCorrupted, match="trailing"):
        store.read("big")
    assert not marker.exists()


def test_large_record_from_a_stream_without_a_file_descriptor(tmp_path):
    blob = os.urandom(9 * 1024 * 1024)
    ResultStore(tmp_path, "pickle").write("big", blob)
    data = (tmp_path / "big").read_bytes()

    def choose(meta):
        return _pickle()

    assert records.read_record(io.BytesIO(data), "big", choose).value == blob
    damaged = bytearray(data)
    damaged[-1000] ^= 1
    with pytest.raises(ResultCorrupted):
        records.read_record(io.BytesIO(bytes(damaged)), "big", choose)


# -- signing ---------------------------------------------------------------------------


def test_signed_records_round_trip_and_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("STASHFLOW_RESULTS_SIGNING_KEY", "s3cret")
    store = ResultStore(tmp_path)
    assert store.write("r", {"v": 1}).signed
    assert store.read_record("r").metadata.signed
    assert ResultStore(tmp_path, signing_key=b"s3cret").read("r") == {"v": 1}


def test_unsigned_record_is_refused_when_a_key_is_configured(boom, tmp_path, monkeypatch):
    _store, _path, marker, _ = boom
    monkeypatch.setenv("STASHFLOW_RESULTS_SIGNING_KEY", "s3cret")
    with pytest.raises(ResultSignatureError, match="unsigned"):
        ResultStore(tmp_path / "root").read("boom")
    with pytest.raises(ResultSignatureError):
        ResultStore(tmp_path / "root", signing_key="other").read("boom")
    assert not marker.exists()


def test_tampered_or_wrongly_keyed_signed_record_is_refused_before_decoding(tmp_path):
    marker = tmp_path / "marker"
    store = ResultStore(tmp_path / "root", signing_key="k1")
    store.write("r", ["harmless", 1])
    path = tmp_path / "root" / "r"
    genuine = path.read_bytes()
    # a forger swaps in a dangerous payload and recomputes digest and CRC
    hsize = struct.unpack_from("<H", genuine, 6)[0]
    evil = pickle.dumps(Boom(marker), protocol=5)
    forged = bytearray(genuine[:hsize])
    struct.pack_into("<Q", forged, 24, len(evil))
    path.write_bytes(_reseal(bytes(forged) + evil))
    with pytest.raises(ResultSignatureError, match="does not verify"):
        store.read("r")
    # tampering with a header field under a valid CRC: extending an expired record's life
    store.write("r", ["harmless", 1], expiration=timedelta(seconds=-1))
    forged = bytearray(path.read_bytes())
    struct.pack_into("<d", forged, 16, 4e9)
    path.write_bytes(_reseal(forged))
    with pytest.raises(ResultSignatureError):
        store.read("r")
    path.write_bytes(genuine)
    with pytest.raises(ResultSignatureError):
        ResultStore(tmp_path / "root", signing_key="k2").read("r")
    assert store.read("r") == ["harmless", 1]
    assert not marker.exists()


def test_tampered_large_signed_record_is_refused_before_decoding(tmp_path):
    marker = tmp_path / "marker"
    store = ResultStore(tmp_path / "root", signing_key="k1")
    store.write("big", (b"\x00" * BIG, Boom(marker)))
    path = tmp_path / "root" / "big"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(_reseal(data))
    with pytest.raises(ResultSignatureError):
        store.read("big")
    assert not marker.exists()


# -- which serializer reads a record ---------------------------------------------------


def test_trusted_serializers_refuse_others_before_decoding(boom, tmp_path):
    _store, _path, marker, _ = boom
    strict = ResultStore(tmp_path / "root", trusted_serializers={"json", "msgpack"})
    with pytest.raises(UntrustedSerializer, match="'pickle'"):
        strict.read("boom")
    assert not marker.exists()
    ResultStore(tmp_path / "root", "json").write("j", [1])
    assert strict.read("j") == [1]


def test_a_record_is_read_with_the_serializer_its_header_names(tmp_path):
    ResultStore(tmp_path, "msgpack").write("m", {1: b"x"})
    ResultStore(tmp_path, "pickle").write("p", {1, 2})
    json_store = ResultStore(tmp_path, "json")
    assert json_store.read("m") == {1: b"x"}
    assert json_store.read("p") == {1, 2}
    assert ResultStore(tmp_path).read_record("m").metadata.serializer == "msgpack"


def test_unknown_serializer_names_itself_and_the_plugin_to_install(tmp_path, monkeypatch):
    ResultStore(tmp_path, "compressed/json").write("c", {"a": 1})
    from stashflow import plugins

    monkeypatch.setenv("STASHFLOW_DISABLE_PLUGINS", "stashflow-compressed-json")
    plugins.reset()
    with pytest.raises(SerializerNotFound) as excinfo:
        ResultStore(tmp_path).read("c")
    message = str(excinfo.value)
    assert "'compressed/json'" in message
    assert "stashflow-compressed-json" in message
    assert "'c'" in message


def test_unknown_third_party_serializer_names_itself(tmp_path):
    from stashflow import hookimpl
    from stashflow.plugins import isolated_plugin_manager

    class Fancy(Serializer):
        type = "acme/fancy"

        def dumps(self, obj):
            return repr(obj).encode()

        def loads(self, data):
            return bytes(data).decode()

    class AcmePlugin:
        @hookimpl
        def register_serializers(self, register):
            register(Fancy)

    import stashflow_local

    pm = isolated_plugin_manager(stashflow_local, AcmePlugin())
    ResultStore(tmp_path, "acme/fancy", plugins=pm).write("f", 5)
    assert ResultStore(tmp_path, plugins=pm).read("f") == "5"
    with pytest.raises(SerializerNotFound, match=r"'acme/fancy'.*install the plugin"):
        ResultStore(tmp_path).read("f")


@pytest.mark.parametrize("offset, value", [(8, float("nan")), (16, float("inf")), (16, 1e300),
                                           (8, -1e300)])
def test_a_forged_header_with_impossible_times_is_corruption(tmp_path, offset, value):
    store = ResultStore(tmp_path, "json")
    store.write("r", [1])
    data = bytearray((tmp_path / "r").read_bytes())
    struct.pack_into("<d", data, offset, value)
    (tmp_path / "r").write_bytes(_reseal(data))
    for call in (store.read, store.read_metadata):
        with pytest.raises(ResultCorrupted, match="timestamps"):
            call("r")
    assert store.is_valid("r") is False


def test_a_serializer_returning_text_is_refused_and_nothing_is_written(tmp_path):
    class Texty(Serializer):
        type = "texty"

        def dumps(self, obj):
            return str(obj)

    with pytest.raises(SerializationError, match="returned str, not bytes"):
        ResultStore(tmp_path / "root", Texty()).write("r", 1)
    root = tmp_path / "root"
    assert not root.exists() or list(root.iterdir()) == []


def test_trusted_serializers_as_one_name(tmp_path):
    ResultStore(tmp_path, "json").write("j", [1])
    ResultStore(tmp_path, "pickle").write("p", [1])
    store = ResultStore(tmp_path, trusted_serializers="json")
    assert store.read("j") == [1]
    with pytest.raises(UntrustedSerializer):
        store.read("p")


def _every_error():
    from stashflow import exceptions
    from stashflow.results import ResultExpired

    return [
        exceptions.InvalidResultKey("a/..", "a relative-path step"),
        exceptions.ResultNotFound("k", "memory://x"),
        ResultExpired("k", None),
        exceptions.ResultCorrupted("k", "payload digest mismatch"),
        exceptions.ResultSignatureError("k", "the signature does not verify"),
        exceptions.SerializerNotFound("compressed/json", ["pickle"], "pip install it"),
        exceptions.UntrustedSerializer("k", "pickle", frozenset({"json"})),
        exceptions.SerializationError("cannot pickle"),
        exceptions.StorageError("could not write"),
        exceptions.SettingsError("bad value"),
    ]


@pytest.mark.parametrize("error", _every_error(), ids=lambda e: type(e).__name__)
def test_errors_survive_pickling_for_worker_processes(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert vars(copy) == vars(error)


@pytest.mark.parametrize("name, signing_key", [
    ("pickle", None), ("pickle", "k"), ("json", None), ("msgpack", "k"),
    ("compressed/json", None), ("compressed/pickle", "k"),
])
def test_no_damaged_record_ever_reaches_the_serializer(tmp_path, monkeypatch, name, signing_key):
    store = ResultStore(tmp_path, name, signing_key=signing_key)
    store.write("r", {"a": [1, 2, 3], "s": "text"})
    path = tmp_path / "r"
    data = path.read_bytes()
    decoded = []
    cls = type(store.serializer)
    monkeypatch.setattr(cls, "loads", lambda self, payload: decoded.append(bytes(payload)))
    monkeypatch.setattr(cls, "load", lambda self, file: decoded.append(file.read()))
    for i in range(len(data)):
        path.write_bytes(data[:i])
        with pytest.raises(ResultCorrupted):
            store.read("r")
        damaged = bytearray(data)
        damaged[i] ^= 0x5A
        path.write_bytes(damaged)
        with pytest.raises(ResultCorrupted):
            store.read("r")
    assert decoded == []
    path.write_bytes(data)
    store.read("r")
    assert len(decoded) == 1  # the control: an intact record does reach it



def _mutations():
    from hypothesis import strategies as st

    edit = st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
        st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 8)),
    )
    return st.lists(edit, min_size=1, max_size=4)


def _apply(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for kind, at, arg in edits:
        at %= len(out) + 1
        if kind == "flip" and at < len(out):
            out[at] ^= arg
        elif kind == "insert":
            out[at:at] = arg
        elif kind == "delete":
            del out[at:at + arg]
    return bytes(out)


def test_random_mutations_only_ever_raise_result_corrupted(tmp_path):
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    marker = tmp_path / "marker"
    store = ResultStore(tmp_path / "root", "pickle")
    store.write("r", [Boom(marker), "some text", 12345])
    genuine = (tmp_path / "root" / "r").read_bytes()

    @hsettings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(edits=_mutations(), noise=st.binary(max_size=200))
    def check(edits, noise):
        for data in (_apply(genuine, edits), noise):
            if data == genuine:
                continue
            (tmp_path / "root" / "r").write_bytes(data)
            with pytest.raises(ResultCorrupted):
                store.read("r")

    check()
    assert not marker.exists()


def test_the_configured_instance_reads_records_of_its_type(tmp_path):
    from stashflow.serializers._builtin import PickleSerializer

    used = []

    class Watched(PickleSerializer):
        def loads(self, data):
            used.append(self.protocol)
            return super().loads(data)

    ResultStore(tmp_path, "pickle").write("p", [1])
    assert ResultStore(tmp_path, Watched(protocol=4)).read("p") == [1]
    assert used == [4]
    assert ResultStore(tmp_path, "json").read("p") == [1]  # registered pickle, not json
    assert used == [4]


# -- bounded decoding of json and msgpack -------------------------------------------------


class _RawAs(Serializer):
    """Writes prepared bytes as a record of serializer `type`."""

    def __init__(self, name):
        self.type = name

    def dumps(self, obj):
        return obj


@pytest.mark.parametrize("name, payload", [
    ("json", b"[" * 200_000 + b"]" * 200_000),            # nesting past any stack
    ("msgpack", b"\x91" * 200_000 + b"\xc0"),
    ("msgpack", b"\xdd\x7f\xff\xff\xff"),                 # an array claiming 2**31 items
    ("msgpack", b"\xdb\x7f\xff\xff\xff" + b"x" * 10),     # a string claiming 2 GiB
    ("json", b"1" * 10_000),                              # an int past the digit limit
])
def test_json_and_msgpack_refuse_hostile_documents_with_a_typed_error(tmp_path, name, payload):
    ResultStore(tmp_path, _RawAs(name)).write("r", payload)
    with pytest.raises(SerializationError, match=f"serializer '{name}'"):
        ResultStore(tmp_path).read("r")


# -- what a streaming load receives --------------------------------------------------------


class _Probe(Serializer):
    """A streaming serializer that records what its load saw."""

    type = "pickle"
    streaming = True
    seen: dict = {}

    def dumps(self, obj):
        return pickle.dumps(obj)

    def loads(self, data):
        return pickle.loads(data)

    def load(self, file):
        seen = _Probe.seen
        seen["readable"], seen["seekable"], seen["tell"] = file.readable(), file.seekable(), file.tell()
        seen["end"] = file.seek(0, 2)
        file.seek(0)
        seen["first"] = file.read(2)
        file.seek(0)
        local = file.local_file()
        if local is not None:
            raw, offset = local
            seen["mapped"] = os.pread(raw.fileno(), 2, offset)
        return pickle.load(file)


@pytest.mark.parametrize("signed", [False, True])
def test_a_streaming_load_sees_exactly_the_payload(tmp_path, monkeypatch, signed):
    if signed:
        monkeypatch.setenv("STASHFLOW_RESULTS_SIGNING_KEY", "k")
    value = os.urandom(BIG)
    meta = ResultStore(tmp_path, "pickle").write("big", value)
    assert ResultStore(tmp_path, _Probe()).read("big") == value
    first = pickle.dumps(value, protocol=5)[:2]
    assert _Probe.seen == {"readable": True, "seekable": True, "tell": 0, "end": meta.size,
                           "first": first, "mapped": first}
