"""Coverage-guided fuzzing of the record decoder with atheris (optional; not run by pytest).

    pip install atheris
    python tests/reliability/fuzz_records.py -runs=1000000          # unsigned
    FUZZ_SIGNED=1 python tests/reliability/fuzz_records.py -max_total_time=600

The corpus goes to $FUZZ_CORPUS (default: a new temp directory).

Each input is stored as a record on memory storage and read through
ResultStore with a probe serializer. The run stops with a crash report if an
exception other than a typed stashflow error escapes, or if a payload is
decoded without its checksum, digest and (with FUZZ_SIGNED) signature holding.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import struct
import sys
import tempfile
import zlib

import atheris

with atheris.instrument_imports():
    import xxhash
    from stashflow import hookimpl
    from stashflow.exceptions import StashflowError
    from stashflow.plugins import isolated_plugin_manager
    from stashflow.results import ResultStore
    from stashflow.serializers import Serializer

SIGNING_KEY = b"fuzz-signing-key" if os.environ.get("FUZZ_SIGNED") else None
FIXED = struct.Struct("<4sBBHddQ16s32sB")
decoded: list[bytes] = []


class Probe(Serializer):
    type = "probe"

    def dumps(self, obj: bytes) -> bytes:
        return bytes(obj)

    def loads(self, data) -> bytes:
        decoded.append(bytes(data))
        return bytes(data)


class ProbePlugin:
    @hookimpl
    def register_serializers(self, register):
        register(Probe)


STORE = ResultStore("memory://atheris", serializer="probe",
                    plugins=isolated_plugin_manager(ProbePlugin()), signing_key=SIGNING_KEY)


def verified_payload(raw: bytes) -> bytes | None:
    if len(raw) < FIXED.size or raw[:4] != b"\x89SFR":
        return None
    fields = FIXED.unpack_from(raw)
    size, length, digest, signature = fields[3], fields[6], fields[7], fields[8]
    if size != FIXED.size + fields[9] + 4 or len(raw) != size + length:
        return None
    if struct.unpack_from("<I", raw, size - 4)[0] != zlib.crc32(raw[: size - 4]):
        return None
    payload = raw[size:]
    if xxhash.xxh3_128_digest(payload) != digest:
        return None
    if SIGNING_KEY is not None:
        head = bytearray(raw[: size - 4])
        head[48:80] = bytes(32)
        record_key = hmac.new(SIGNING_KEY, b"stashflow-record-key\x00k", hashlib.sha256).digest()
        mac = hmac.new(record_key, bytes(head) + hashlib.sha256(payload).digest(), hashlib.sha256)
        if not (fields[2] & 1) or not hmac.compare_digest(mac.digest(), signature):
            return None
    return payload


def one_input(data: bytes) -> None:
    STORE.storage.write("k", data)
    decoded.clear()
    with contextlib.suppress(StashflowError):
        STORE.read("k")
    if decoded and decoded != [verified_payload(data)]:
        raise AssertionError(f"decoded an unverified payload from {data!r}")


def main() -> None:
    STORE.write("k", b"a seed payload")  # a valid record for the corpus to start from
    seed = STORE.storage.read("k")
    corpus = os.environ.get("FUZZ_CORPUS") or tempfile.mkdtemp(prefix="stashflow-fuzz-")
    os.makedirs(corpus, exist_ok=True)
    with open(os.path.join(corpus, "seed"), "wb") as f:
        f.write(seed)
    atheris.Setup([*sys.argv, corpus], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
