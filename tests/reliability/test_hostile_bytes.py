"""Hostile bytes: damaged, forged and random records never reach a deserializer.

The records are read through ResultStore on memory storage with serializers
from an in-process test plugin (an isolated plugin manager) that record every
payload they are asked to decode. Whatever the bytes, only typed stashflow
errors escape, and a payload is decoded only if this test's own check of the
header checksum, the payload digest and (with signing on) the HMAC passes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import struct
import uuid
import zlib

import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stashflow import hookimpl
from stashflow.exceptions import (
    ResultCorrupted,
    ResultSignatureError,
    StashflowError,
    UntrustedSerializer,
)
from stashflow.plugins import isolated_plugin_manager
from stashflow.results import ResultStore
from stashflow.serializers import Serializer

SIGNING_KEY = b"fuzz-signing-key"
MAGIC = b"\x89SFR"
FIXED = struct.Struct("<4sBBHddQ16s32sB")
decoded: list[bytes] = []  # every payload a probe serializer was asked to decode


class Probe(Serializer):
    """Bytes in, the same bytes out; remembers each payload it decodes."""

    type = "probe"

    def dumps(self, obj: bytes) -> bytes:
        return bytes(obj)

    def loads(self, data) -> bytes:
        decoded.append(bytes(data))
        return bytes(data)


class StreamingProbe(Probe):
    type = "probe-stream"
    streaming = True

    def load(self, file) -> bytes:
        data = file.read()
        decoded.append(data)
        return data


class ProbePlugin:
    @hookimpl
    def register_serializers(self, register):
        register(Probe)
        register(StreamingProbe)


PM = isolated_plugin_manager(ProbePlugin())
SERIALIZERS = ("probe", "probe-stream")


def _store(signed: bool, serializer: str = "probe") -> ResultStore:
    return ResultStore(f"memory://fuzz-{uuid.uuid4().hex}", serializer=serializer, plugins=PM,
                       signing_key=SIGNING_KEY if signed else None)


STORES = {(signed, name): _store(signed, name) for signed in (False, True) for name in SERIALIZERS}


def _valid(store: ResultStore, payload: bytes, expiration=None) -> bytes:
    """A genuine record for key "k" (signatures bind the key: it is read back at "k")."""
    store.write("k", payload, expiration=expiration)
    return store.storage.read("k")


def record_key(key: str) -> bytes:
    """The HMAC key of one record: the signing key bound to the record's key."""
    return hmac.new(SIGNING_KEY, b"stashflow-record-key\x00" + key.encode(), hashlib.sha256).digest()


def _independently_verified(raw: bytes, signed: bool) -> bytes | None:
    """The payload of `raw` if this test's own reading of the format accepts it, else None."""
    if len(raw) < FIXED.size or raw[:4] != MAGIC:
        return None
    fields = FIXED.unpack_from(raw)
    size, length, digest, signature, name_len = fields[3], fields[6], fields[7], fields[8], fields[9]
    if size != FIXED.size + name_len + 4 or len(raw) != size + length:
        return None
    if struct.unpack_from("<I", raw, size - 4)[0] != zlib.crc32(raw[: size - 4]):
        return None
    payload = raw[size:]
    if xxhash.xxh3_128_digest(payload) != digest:
        return None
    if signed:
        head = bytearray(raw[: size - 4])
        head[48:80] = bytes(32)
        expected = hmac.new(record_key("k"), bytes(head) + hashlib.sha256(payload).digest(),
                            hashlib.sha256).digest()
        if not (fields[2] & 1) or not hmac.compare_digest(expected, signature):
            return None
    return payload


def feed(raw: bytes, signed: bool, serializer: str = "probe") -> object:
    """Read `raw` as a record; fail unless only typed errors escape and decoding was earned."""
    store = STORES[(signed, serializer)]
    store.storage.write("k", raw)
    decoded.clear()
    try:
        value = store.read("k")
    except StashflowError as exc:
        value = exc
    except BaseException as exc:
        pytest.fail(f"an untyped {type(exc).__name__} escaped for {raw[:120]!r}: {exc}")
    if decoded:
        payload = _independently_verified(raw, signed)
        assert payload is not None, f"a payload was decoded from a record that fails checks: {raw!r}"
        assert decoded == [payload]
        assert value == payload
    return value


def _mutate(raw: bytes, ops: list[tuple[int, int, int, bytes]]) -> bytes:
    data = bytearray(raw)
    for kind, a, b, extra in ops:
        n = max(len(data), 1)
        if kind == 0:  # flip a bit
            if data:
                data[a % n] ^= 1 << (b % 8)
        elif kind == 1:  # set a byte
            if data:
                data[a % n] = b % 256
        elif kind == 2:  # truncate
            del data[a % n:]
        elif kind == 3:  # insert
            data[a % n:a % n] = extra
        elif kind == 4:  # delete a range
            del data[a % n:a % n + b % 64]
        elif kind == 5:  # append
            data += extra
        else:  # overwrite with bytes
            data[a % n:a % n + len(extra)] = extra
    return bytes(data)


PAYLOADS = st.one_of(st.binary(max_size=200), st.sampled_from([b"", b"x" * 70_000]))
OPS = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 2**31), st.integers(0, 2**31),
                         st.binary(max_size=16)), min_size=1, max_size=6)
FUZZ = settings(max_examples=2000, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(payload=PAYLOADS, ops=OPS, signed=st.booleans(), serializer=st.sampled_from(SERIALIZERS))
def test_mutated_records_raise_typed_errors_and_decode_only_verified_payloads(
        payload, ops, signed, serializer):
    raw = _valid(STORES[(signed, serializer)], payload)
    mutated = _mutate(raw, ops)
    result = feed(mutated, signed, serializer)
    if mutated == raw:
        assert result == payload
    elif not isinstance(result, bytes):
        assert isinstance(result, StashflowError)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=300),
                     st.binary(max_size=300).map(lambda b: MAGIC + b"\x01" + b),
                     st.binary(max_size=300).map(lambda b: MAGIC + b"\x01\x00\x5b\x00" + b)),
       signed=st.booleans())
def test_random_bytes_are_refused_with_result_corrupted(raw, signed):
    result = feed(raw, signed)
    assert isinstance(result, ResultCorrupted)
    assert decoded == []


def _forge(name: bytes, created: float, expiration: float, length: int, digest: bytes,
           signature: bytes, flags: int, payload: bytes) -> bytes:
    """A record with a correct header checksum and whatever fields it is given."""
    head = FIXED.pack(MAGIC, 1, flags, FIXED.size + len(name) + 4, created, expiration, length,
                      digest, signature, len(name)) + name
    return head + struct.pack("<I", zlib.crc32(head)) + payload


FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.0, 1e300, -1e300, 2**63, 1.7e9, 4.1e9]))


@FUZZ
@given(name=st.one_of(st.sampled_from([b"probe", b"probe-stream", b"json", b"nope", b""]),
                      st.binary(max_size=255)),
       created=FLOATS, expiration=FLOATS,
       length=st.one_of(st.integers(0, 400), st.sampled_from([2**63 - 1, 2**64 - 1, 10**12])),
       payload=st.binary(max_size=300), right_digest=st.booleans(),
       signature=st.binary(min_size=32, max_size=32), flags=st.integers(0, 255),
       signed=st.booleans())
def test_forged_headers_with_a_valid_checksum_never_decode_unverified_payloads(
        name, created, expiration, length, payload, right_digest, signature, flags, signed):
    digest = xxhash.xxh3_128_digest(payload) if right_digest else bytes(16)
    raw = _forge(name, created, expiration, length, digest, signature, flags, payload)
    result = feed(raw, signed)
    if signed:
        # Nobody here holds the key: a forged header can never be signed right.
        assert decoded == []
        assert isinstance(result, StashflowError)


def test_a_valid_record_decodes_and_a_one_bit_flip_anywhere_is_refused():
    for signed in (False, True):
        raw = _valid(STORES[(signed, "probe")], b"payload bytes")
        assert feed(raw, signed) == b"payload bytes"
        for position in range(len(raw)):
            for bit in (0, 7):
                flipped = bytearray(raw)
                flipped[position] ^= 1 << bit
                result = feed(bytes(flipped), signed)
                assert isinstance(result, ResultCorrupted), (position, bit, result)
                assert decoded == []


def test_a_big_streamed_record_is_verified_in_full_before_it_is_decoded():
    payload = os.urandom(9 * 1024 * 1024)  # past the size where payloads are streamed
    for signed in (False, True):
        raw = _valid(STORES[(signed, "probe-stream")], payload)
        assert feed(raw, signed, "probe-stream") == payload
        for position in (len(raw) - 1, len(raw) // 2):
            flipped = bytearray(raw)
            flipped[position] ^= 0x10
            assert isinstance(feed(bytes(flipped), signed, "probe-stream"), ResultCorrupted)
            assert decoded == []
        assert isinstance(feed(raw[:-1], signed, "probe-stream"), ResultCorrupted)
        assert isinstance(feed(raw + b"\0", signed, "probe-stream"), ResultCorrupted)
        assert decoded == []


def test_records_unsigned_or_signed_with_another_key_are_refused_before_decoding():
    unsigned = _valid(_store(signed=False), b"value")
    other = ResultStore(f"memory://fuzz-{uuid.uuid4().hex}", serializer="probe", plugins=PM,
                        signing_key=b"someone-elses-key")
    for raw in (unsigned, _valid(other, b"value")):
        result = feed(raw, signed=True)
        assert isinstance(result, ResultSignatureError)
        assert decoded == []


class _Booby:
    """Unpickling this creates a directory: the proof that pickle ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_a_store_trusting_only_json_and_msgpack_refuses_a_pickle_record_before_decoding(tmp_path):
    marker = tmp_path / "pickle-ran"
    shared = f"memory://shared-{uuid.uuid4().hex}"
    ResultStore(shared, serializer="pickle", signing_key=None).write("evil", _Booby(str(marker)))
    ResultStore(shared, serializer="json", signing_key=None).write("fine", {"a": 1})
    cautious = ResultStore(shared, trusted_serializers={"json", "msgpack"}, signing_key=None)

    with pytest.raises(UntrustedSerializer, match="'pickle'"):
        cautious.read("evil")
    assert not marker.exists()
    assert cautious.read("fine") == {"a": 1}
    # The same bytes through a store that trusts pickle do run it: the record was live.
    ResultStore(shared, signing_key=None).read("evil")
    assert marker.is_dir()


def test_trusted_serializers_are_checked_before_the_probe_is_ever_called():
    store = ResultStore(f"memory://fuzz-{uuid.uuid4().hex}", serializer="probe", plugins=PM,
                        trusted_serializers={"probe-stream"}, signing_key=None)
    store.write("k", b"value")
    decoded.clear()
    with pytest.raises(UntrustedSerializer):
        store.read("k")
    assert decoded == []


def test_a_hundred_thousand_random_mutations_never_decode_an_unverified_payload():
    rng = random.Random()
    seeds = {(signed, name): [_valid(STORES[(signed, name)], rng.randbytes(n)) for n in (0, 1, 40, 900)]
             for signed in (False, True) for name in SERIALIZERS}
    for _ in range(100_000):
        signed, name = rng.choice(list(seeds))
        raw = rng.choice(seeds[(signed, name)])
        ops = [(rng.randrange(7), rng.getrandbits(31), rng.getrandbits(31),
                rng.randbytes(rng.randrange(17))) for _ in range(rng.randint(1, 4))]
        mutated = _mutate(raw, ops) if rng.random() < 0.9 else rng.randbytes(rng.randrange(200))
        result = feed(mutated, signed, name)
        if mutated != raw:
            assert isinstance(result, StashflowError) or decoded


def test_a_signed_record_copied_to_another_key_is_refused(tmp_path):
    """The signature binds the key: a cached value cannot be served for other inputs."""
    store = ResultStore(tmp_path / "results", serializer="json", signing_key=SIGNING_KEY)
    store.write("tasks/transfer-to-alice", {"amount": 10})
    store.write("tasks/transfer-to-mallory", {"amount": 1})
    genuine = (tmp_path / "results" / "tasks" / "transfer-to-alice").read_bytes()
    (tmp_path / "results" / "tasks" / "transfer-to-mallory").write_bytes(genuine)
    with pytest.raises(ResultSignatureError):
        store.read("tasks/transfer-to-mallory")
    assert store.read("tasks/transfer-to-alice") == {"amount": 10}
