"""The result record format: a small binary header, then the raw payload.

Layout (little-endian), format version 1::

    offset size  field
    0      4     magic b"\\x89SFR"
    4      1     format version (1)
    5      1     flags (bit 0: signed)
    6      2     header length H (this whole header, in bytes)
    8      8     created, float seconds since the epoch
    16     8     expiration, float seconds since the epoch (0 = never)
    24     8     payload length N
    32     16    payload digest: xxh3-128 of the payload
    48     32    signature: HMAC-SHA256 (zeros when unsigned)
    80     1     serializer name length L
    81     L     serializer name (UTF-8): a registry name, never an import path
    81+L   4     CRC32 of bytes [0, 81+L)
    H      N     payload, exactly as the serializer produced it

The signature is HMAC-SHA256(key, header bytes [0, 81+L) with the signature
field zeroed || SHA-256(payload)): it covers every header field and the
payload. Nothing is deserialized until the length, digest and (when a signing
key is configured) the signature have been checked.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import mmap
import struct
import tempfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from .exceptions import (
    DecodeLimitExceeded,
    ResultCorrupted,
    ResultSignatureError,
    SerializationError,
)
from .payloads import PayloadWriter, payload_file

MAGIC = b"\x89SFR"
FORMAT_VERSION = 1
FLAG_SIGNED = 0x01
_FIXED = struct.Struct("<4sBBHddQ16s32sB")  # up to and including the name length
_CRC = struct.Struct("<I")
_SIG_OFFSET = 48
_SIG_SIZE = 32
ZERO_SIG = bytes(_SIG_SIZE)
MAX_HEADER = _FIXED.size + 255 + _CRC.size
PEEK_BYTES = 64 * 1024  # one read takes the whole record when it is this small
STREAM_BYTES = 8 * 1024 * 1024  # bigger payloads are verified first, then streamed
_WINDOW = 16 * 1024 * 1024  # verify big payloads this much at a time
_COPY_BUFFER = 4 * 1024 * 1024  # the private copy of a big payload moves this much at a time


@dataclass(frozen=True)
class RecordMetadata:
    """What a record's header says, read without touching the payload."""

    serializer: str
    created: datetime
    expiration: datetime | None
    size: int  # payload bytes
    header_size: int
    signed: bool
    digest: str
    format_version: int = FORMAT_VERSION

    @property
    def record_size(self) -> int:
        return self.header_size + self.size

    def is_expired(self, now: datetime | None = None) -> bool:
        if self.expiration is None:
            return False
        return (now or datetime.now(UTC)) >= self.expiration


@dataclass(frozen=True)
class ResultRecord:
    value: Any
    metadata: RecordMetadata

    @property
    def result(self) -> Any:
        """The value, under Prefect's name (`store.read_record(key).result`)."""
        return self.value


def _xxh3():
    import xxhash

    return xxhash.xxh3_128()


def _ts(value: datetime | None) -> float:
    return 0.0 if value is None else value.timestamp()


def _dt(value: float) -> datetime | None:
    return None if value == 0.0 else datetime.fromtimestamp(value, UTC)


def _header(name: bytes, created: float, expiration: float, length: int, digest: bytes,
            signed: bool) -> bytearray:
    size = _FIXED.size + len(name) + _CRC.size
    head = bytearray(_FIXED.pack(MAGIC, FORMAT_VERSION, FLAG_SIGNED if signed else 0, size,
                                 created, expiration, length, digest, ZERO_SIG, len(name)))
    head += name
    return head


def _sign(key: bytes, head: bytes | bytearray | memoryview, payload_sha256: bytes) -> bytes:
    unsigned = bytearray(head)
    unsigned[_SIG_OFFSET:_SIG_OFFSET + _SIG_SIZE] = ZERO_SIG
    return hmac.new(key, bytes(unsigned) + payload_sha256, hashlib.sha256).digest()


def _seal(head: bytearray, signing_key: bytes | None, payload_sha256: bytes | None) -> bytes:
    if signing_key is not None:
        head[_SIG_OFFSET:_SIG_OFFSET + _SIG_SIZE] = _sign(signing_key, head, payload_sha256)
    return bytes(head) + _CRC.pack(zlib.crc32(head))


def _encode_error(exc: Exception, serializer: Any, key: str | None,
                  writer: PayloadWriter | None = None) -> BaseException:
    """What a failure while encoding becomes: the storage's own errors as they are, the
    serializer's as a SerializationError naming it and the key."""
    if writer is not None and writer.sink_error is not None and (
            exc is writer.sink_error or exc.__cause__ is writer.sink_error
            or exc.__context__ is writer.sink_error):
        return writer.sink_error
    where = f" for key {key!r}" if key is not None else ""
    detail = str(exc) if isinstance(exc, SerializationError) else f"{type(exc).__name__}: {exc}"
    error = SerializationError(f"serializer {serializer.type!r} could not encode the value{where}: "
                               f"{detail}")
    error.__cause__ = exc
    return error


def encode_payload_header(serializer_name: str, payload: bytes | memoryview, created: datetime,
                          expiration: datetime | None, signing_key: bytes | None) -> bytes:
    """The header for an already-serialized payload."""
    import xxhash

    head = _header(serializer_name.encode("utf-8"), created.timestamp(), _ts(expiration),
                   len(payload), xxhash.xxh3_128_digest(payload), signing_key is not None)
    sha = hashlib.sha256(payload).digest() if signing_key is not None else None
    return _seal(head, signing_key, sha)


def write_record(file: IO[bytes], obj: Any, serializer, *, created: datetime,
                 expiration: datetime | None = None, signing_key: bytes | None = None,
                 key: str | None = None) -> RecordMetadata:
    """Serialize `obj` into `file` (seekable, positioned at 0) as one record.

    Whatever the serializer raises becomes a SerializationError naming it and `key`
    (the original chained); an error of `file` itself (the storage) passes unchanged.
    """
    name = serializer.type.encode("utf-8")
    if len(name) > 255:
        raise SerializationError(f"serializer name {serializer.type!r} is longer than 255 bytes")
    payload = None
    if serializer.streaming:
        placeholder = bytes(_header(name, 0.0, 0.0, 0, bytes(16), False)) + bytes(_CRC.size)
        writer = PayloadWriter(file, placeholder, signing_key is not None)
        try:
            serializer.dump(obj, writer)
        except Exception as exc:
            raise _encode_error(exc, serializer, key, writer)  # noqa: B904 - the cause is set
        if writer.chunks is not None:
            chunks = writer.chunks
            payload = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        else:
            length, digest = writer.length, writer.digest.digest()
            sha = writer.sha.digest() if writer.sha is not None else None
            head = _header(name, created.timestamp(), _ts(expiration), length, digest,
                           signing_key is not None)
            file.seek(0)
            file.write(_seal(head, signing_key, sha))
    else:
        try:
            payload = serializer.dumps(obj)
        except Exception as exc:
            raise _encode_error(exc, serializer, key)  # noqa: B904 - the cause is set
    if payload is not None:
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise SerializationError(
                f"serializer {serializer.type!r} returned {type(payload).__name__}, not bytes"
                + (f" (key {key!r})" if key is not None else "")
            )
        head = encode_payload_header(serializer.type, payload, created, expiration, signing_key)
        if len(payload) <= PEEK_BYTES:
            file.write(head + payload)  # one write call for a small record
        else:
            file.write(head)
            file.write(payload)
        length = len(payload)
        digest = head[32:48]
    return RecordMetadata(serializer.type, created, expiration, length,
                          _FIXED.size + len(name) + _CRC.size, signing_key is not None,
                          digest.hex())


def parse_header(data: bytes | memoryview, key: str | None) -> RecordMetadata:
    """Parse and check a header from the first bytes of a record."""
    if len(data) < _FIXED.size:
        if bytes(data[:4]) != MAGIC[: len(data)]:
            raise ResultCorrupted(key, "not a stashflow record (bad magic)")
        raise ResultCorrupted(key, f"truncated header ({len(data)} bytes)")
    (magic, version, flags, size, created, expiration, length, digest, _sig,
     name_len) = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise ResultCorrupted(key, "not a stashflow record (bad magic)")
    if version != FORMAT_VERSION:
        raise ResultCorrupted(
            key, f"record format version {version} is not supported by this stashflow "
                 f"(it reads version {FORMAT_VERSION}); upgrade stashflow to read it"
        )
    if size != _FIXED.size + name_len + _CRC.size:
        raise ResultCorrupted(key, "inconsistent header length")
    if len(data) < size:
        raise ResultCorrupted(key, f"truncated header ({len(data)} of {size} bytes)")
    (crc,) = _CRC.unpack_from(data, size - _CRC.size)
    if zlib.crc32(data[: size - _CRC.size]) != crc:
        raise ResultCorrupted(key, "header checksum mismatch")
    try:
        name = bytes(data[_FIXED.size:_FIXED.size + name_len]).decode("utf-8")
    except UnicodeDecodeError:
        raise ResultCorrupted(key, "serializer name is not UTF-8") from None
    try:
        created_at, expires_at = _dt(created) or datetime.fromtimestamp(0, UTC), _dt(expiration)
    except (ValueError, OverflowError, OSError):
        raise ResultCorrupted(key, "the header's timestamps are out of range") from None
    return RecordMetadata(name, created_at, expires_at, length, size, bool(flags & FLAG_SIGNED),
                          digest.hex())


def read_header(file: IO[bytes], key: str | None) -> tuple[RecordMetadata, bytes]:
    """Read just the header from `file` (positioned at 0): never the payload."""
    first = file.read(_FIXED.size)
    if len(first) >= 8 and first[:4] == MAGIC:
        (size,) = struct.unpack_from("<H", first, 6)
        if _FIXED.size < size <= MAX_HEADER:
            first += file.read(size - len(first))
    meta = parse_header(first, key)
    return meta, first[: meta.header_size]


def _check_signature(meta: RecordMetadata, head: bytes, payload_sha: bytes,
                     signing_key: bytes, key: str | None) -> None:
    if not meta.signed:
        raise ResultSignatureError(key, "the record is unsigned and a signing key is configured")
    expected = _sign(signing_key, head[: meta.header_size - _CRC.size], payload_sha)
    if not hmac.compare_digest(expected, head[_SIG_OFFSET:_SIG_OFFSET + _SIG_SIZE]):
        raise ResultSignatureError(key, "the signature does not verify (wrong key or tampered)")


def verify_payload(meta: RecordMetadata, head: bytes, payload: bytes | memoryview,
                   signing_key: bytes | None, key: str | None) -> None:
    import xxhash

    if len(payload) != meta.size:
        raise ResultCorrupted(key, f"truncated payload ({len(payload)} of {meta.size} bytes)")
    if signing_key is not None:
        _check_signature(meta, head, hashlib.sha256(payload).digest(), signing_key, key)
    if xxhash.xxh3_128_digest(payload).hex() != meta.digest:
        raise ResultCorrupted(key, "payload digest mismatch")


def _verify_mapped(meta: RecordMetadata, head: bytes, file: IO[bytes],
                   signing_key: bytes | None, key: str | None) -> bool:
    """Check a big payload in place through mmap windows; False if `file` cannot be mapped."""
    try:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False  # not a regular file (a pipe, a remote file)
    digest = _xxh3()
    sha = hashlib.sha256() if signing_key is not None else None
    start, end = meta.header_size, meta.header_size + meta.size
    if len(mapped) < end:
        mapped.close()
        raise ResultCorrupted(key, f"truncated payload: the record is {len(mapped)} bytes but its "
                                   f"header says {end}")
    dontneed = getattr(mmap, "MADV_DONTNEED", None)
    with mapped:
        view = memoryview(mapped)
        try:
            for window in range(0, end, _WINDOW):
                lo, hi = max(window, start), min(window + _WINDOW, end)
                if lo >= hi:
                    continue
                chunk = view[lo:hi]
                digest.update(chunk)
                if sha is not None:
                    sha.update(chunk)
                chunk.release()
                if dontneed is not None:
                    # Drop the window from our resident set; the page cache keeps it.
                    mapped.madvise(dontneed, window, min(_WINDOW, len(mapped) - window))
        finally:
            view.release()
    _check_digests(meta, head, digest, sha, signing_key, key)
    return True


def _check_digests(meta: RecordMetadata, head: bytes, digest: Any, sha: Any,
                   signing_key: bytes | None, key: str | None) -> None:
    if signing_key is not None:
        _check_signature(meta, head, sha.digest(), signing_key, key)
    if digest.hexdigest() != meta.digest:
        raise ResultCorrupted(key, "payload digest mismatch")


def _private_copy(meta: RecordMetadata, head: bytes, file: IO[bytes],
                  signing_key: bytes | None, key: str | None) -> IO[bytes]:
    """The payload copied into an unlinked temp file of our own, verified on the way.

    What is decoded afterwards is this copy: bytes nobody else can change once
    their digest and signature have been checked. Re-reading the record instead
    would let a writer without the key swap the payload between the check and
    the decode. Memory stays flat (one buffer); the copy lives in TMPDIR.
    """
    tmp = tempfile.TemporaryFile(prefix="stashflow-verified-")  # noqa: SIM115 - the caller closes it
    try:
        digest = _xxh3()
        sha = hashlib.sha256() if signing_key is not None else None
        file.seek(meta.header_size)
        buf = bytearray(_COPY_BUFFER)
        view = memoryview(buf)
        remaining = meta.size
        while remaining:
            n = file.readinto(view[: min(len(buf), remaining)])
            if not n:
                raise ResultCorrupted(key, f"truncated payload ({meta.size - remaining} of "
                                           f"{meta.size} bytes)")
            chunk = view[:n]
            digest.update(chunk)
            if sha is not None:
                sha.update(chunk)
            tmp.write(chunk)
            remaining -= n
        _check_digests(meta, head, digest, sha, signing_key, key)
        tmp.seek(0)
        return tmp
    except BaseException:
        tmp.close()
        raise


def _deserialize(call, key: str | None, serializer) -> Any:
    try:
        return call()
    except DecodeLimitExceeded as exc:
        raise DecodeLimitExceeded(f"the record at key {key!r} was not decoded: {exc}") from exc
    except Exception as exc:
        raise SerializationError(
            f"the record at key {key!r} is intact but serializer {serializer.type!r} could not "
            f"decode it: {type(exc).__name__}: {exc}"
        ) from exc


def _size(file: IO[bytes]) -> int | None:
    """The size of a seekable file (position left unchanged), else None."""
    try:
        if not file.seekable():
            return None
        here = file.tell()
        total = file.seek(0, 2)
        file.seek(here)
        return total
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


def _read_rest(file: IO[bytes], first: bytes, end: int, known_size: bool) -> bytearray | bytes:
    """`first` plus the rest of the record, read into one buffer (short if truncated).

    The buffer is allocated up front only when the file's size has been checked
    against `end`; otherwise it grows as bytes arrive, so a header claiming a huge
    length cannot make us allocate it.
    """
    if not known_size:
        buf = bytearray(first)
        while len(buf) < end:
            chunk = file.read(min(end - len(buf), 8 * 1024 * 1024))
            if not chunk:
                break
            buf += chunk
        return buf
    buf = bytearray(end)
    buf[: len(first)] = first
    view, got = memoryview(buf), len(first)
    while got < end:
        n = file.readinto(view[got:])
        if not n:
            return bytes(buf[:got])
        got += n
    return buf


def _check_size(total: int, end: int, key: str | None) -> None:
    if total < end:
        raise ResultCorrupted(key, f"truncated payload: the record is {total} bytes but its "
                                   f"header says {end}")
    if total > end:
        raise ResultCorrupted(key, f"trailing bytes after the payload ({total - end})")


def read_record(file: IO[bytes], key: str | None, choose_serializer, *,
                signing_key: bytes | None = None, private: bool = False) -> ResultRecord:
    """Read, verify, then deserialize one record from `file` (positioned at 0).

    `choose_serializer(metadata)` returns the Serializer to use or raises; it is
    called after the header is checked and before any payload byte is decoded.
    Only verified bytes are decoded: small payloads from memory, big ones from a
    private copy when `signing_key` is given or `private` is true.
    """
    first = file.read(PEEK_BYTES)
    meta = parse_header(first, key)
    if signing_key is not None and not meta.signed:
        raise ResultSignatureError(key, "the record is unsigned and a signing key is configured")
    serializer = choose_serializer(meta)
    hsize = meta.header_size
    end = hsize + meta.size
    # A short read means `first` is the whole file; otherwise ask the file its size,
    # so a length in the header is checked before anything is allocated for it.
    total = len(first) if len(first) < PEEK_BYTES else _size(file)
    if total is not None:
        _check_size(total, end, key)
    head = first[:hsize]
    if len(first) >= end or not serializer.streaming or meta.size < STREAM_BYTES or total is None:
        record = first if len(first) >= end else _read_rest(file, first, end, total is not None)
        if len(record) < end:
            _check_size(len(record), end, key)
        if len(record) > end or (total is None and file.read(1)):
            raise ResultCorrupted(key, "trailing bytes after the payload")
        payload = memoryview(record)[hsize:end]
        verify_payload(meta, head, payload, signing_key, key)
        return ResultRecord(_deserialize(lambda: serializer.loads(payload), key, serializer), meta)
    # A big payload for a streaming serializer. With a signing key (or a trusted-only
    # store) the bytes decoded must be the bytes verified: a private copy. Otherwise
    # the digest guards against corruption only, and a local file is verified in place.
    if private or signing_key is not None or not _verify_mapped(meta, head, file, signing_key, key):
        with _private_copy(meta, head, file, signing_key, key) as copy:
            return ResultRecord(_load(serializer, copy, 0, meta.size, key), meta)
    return ResultRecord(_load(serializer, file, hsize, meta.size, key), meta)


def _load(serializer, file: IO[bytes], start: int, size: int, key: str | None) -> Any:
    return _deserialize(lambda: serializer.load(payload_file(file, start, size)), key, serializer)
