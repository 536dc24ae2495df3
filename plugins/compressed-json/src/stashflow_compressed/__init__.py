"""Compressed serializers: `compressed/json` and `compressed/pickle`.

`CompressedSerializer(serializer="json", codec="zlib", level=None)` wraps any
registered serializer. The payload starts with one byte naming the codec from
a fixed table, so a record written with lzma reads back with a default
instance; no stored byte ever names code to import.

Decompression is bounded: a payload expands to at most
STASHFLOW_RESULTS_MAX_DECOMPRESSED_SIZE bytes (default 1 GiB), and to at most
STASHFLOW_RESULTS_MAX_COMPRESSION_RATIO times its stored size (default 1000)
once past 16 MiB. Past either limit decoding stops with DecodeLimitExceeded,
having produced no more than the limit: a small record cannot make a reader
allocate gigabytes.
"""

from __future__ import annotations

import importlib
from typing import Any

from stashflow import hookimpl
from stashflow.exceptions import DecodeLimitExceeded, SerializationError
from stashflow.registry import resolve_serializer
from stashflow.serializers import Serializer

# codec name -> (payload tag, stdlib/3rd-party module, default level)
CODECS: dict[str, tuple[int, str, int | None]] = {
    "zlib": (1, "zlib", 6),
    "bz2": (2, "bz2", 9),
    "lzma": (3, "lzma", None),
    "zstd": (4, "zstandard", 3),
}
_BY_TAG = {tag: name for name, (tag, _, _) in CODECS.items()}


def _compress(codec: str, data: bytes, level: int | None) -> bytes:
    module = _module(codec)
    if codec == "zstd":
        return module.ZstdCompressor(level=level).compress(data)
    if codec == "lzma":
        return module.compress(data, preset=level)
    return module.compress(data, level) if level is not None else module.compress(data)


# Below this many bytes of output the ratio limit does not apply: small values of
# very repetitive data (a list of zeros) compress past any ratio worth refusing.
RATIO_FLOOR = 16 * 1024 * 1024
_CHUNK = 4 * 1024 * 1024


def decompression_limit(compressed_size: int, max_size: int | None = None,
                        max_ratio: float | None = None) -> int:
    """The most bytes a payload of `compressed_size` may decompress to."""
    from stashflow import settings

    if max_size is None:
        max_size = settings.get("STASHFLOW_RESULTS_MAX_DECOMPRESSED_SIZE")
    if max_ratio is None:
        max_ratio = settings.get("STASHFLOW_RESULTS_MAX_COMPRESSION_RATIO")
    return min(max_size, max(int(max_ratio * compressed_size), RATIO_FLOOR))


def _too_big(codec: str, size: int, limit: int) -> DecodeLimitExceeded:
    return DecodeLimitExceeded(
        f"the {codec} payload ({size} bytes stored) expands past {limit} bytes; raise "
        "STASHFLOW_RESULTS_MAX_DECOMPRESSED_SIZE or STASHFLOW_RESULTS_MAX_COMPRESSION_RATIO "
        "if this record is expected")


def _decompress(codec: str, data: bytes | memoryview, limit: int) -> bytearray:
    """`data` decompressed, a chunk at a time, never holding much more than `limit` bytes."""
    module = _module(codec)
    out = bytearray()
    if codec == "zstd":
        import io

        reader = module.ZstdDecompressor().stream_reader(io.BytesIO(data))
        try:
            expected = module.frame_content_size(data)  # -1 when the frame does not say
            while chunk := reader.read(min(_CHUNK, limit + 1 - len(out))):
                out += chunk
                if len(out) > limit:
                    raise _too_big(codec, len(data), limit)
        except module.ZstdError as exc:
            raise SerializationError(f"the zstd payload is damaged: {exc}") from None
        if expected >= 0 and len(out) != expected:  # the reader stops quietly at a cut
            raise SerializationError("the zstd payload is truncated")
        return out
    if codec == "zlib":
        inflater, pending = module.decompressobj(), data
        while not inflater.eof:
            chunk = inflater.decompress(pending, _CHUNK)
            pending = inflater.unconsumed_tail
            if not chunk and not pending:
                raise SerializationError("the zlib payload is truncated")
            out += chunk
            if len(out) > limit:
                raise _too_big(codec, len(data), limit)
        return out
    inflater, pending = (module.BZ2Decompressor() if codec == "bz2"
                         else module.LZMADecompressor()), data
    while not inflater.eof:
        chunk = inflater.decompress(pending, max_length=_CHUNK)
        pending = b""
        if not chunk and inflater.needs_input:
            raise SerializationError(f"the {codec} payload is truncated")
        out += chunk
        if len(out) > limit:
            raise _too_big(codec, len(data), limit)
    return out


def _module(codec: str):
    try:
        return importlib.import_module(CODECS[codec][1])
    except ImportError:
        raise SerializationError(
            f"codec {codec!r} needs the {CODECS[codec][1]} package: "
            "pip install 'stashflow-compressed-json[zstd]'"
        ) from None


class CompressedSerializer(Serializer):
    """Another serializer's bytes, compressed with zlib (default), bz2, lzma or zstd."""

    def __init__(self, serializer: str | Serializer = "json", codec: str = "zlib",
                 level: int | None = None, *, max_decompressed_size: int | None = None,
                 max_ratio: float | None = None, compressionlib: str | None = None):
        if compressionlib is not None:  # Prefect's name for the codec
            if codec != "zlib" and codec != compressionlib:
                raise ValueError(f"codec={codec!r} and compressionlib={compressionlib!r} "
                                 "disagree: give one of them")
            codec = compressionlib
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
        self.serializer = resolve_serializer(serializer)
        if isinstance(self.serializer, CompressedSerializer):
            raise ValueError("a CompressedSerializer cannot wrap another one")
        self.codec = codec
        self.level = CODECS[codec][2] if level is None else level
        # None: the STASHFLOW_RESULTS_MAX_* settings at the time of reading
        self.max_decompressed_size = max_decompressed_size
        self.max_ratio = max_ratio

    @property
    def type(self) -> str:  # type: ignore[override]
        return f"compressed/{self.serializer.type}"

    def dumps(self, obj: Any) -> bytes:
        raw = self.serializer.dumps(obj)
        return bytes([CODECS[self.codec][0]]) + _compress(self.codec, raw, self.level)

    def loads(self, data: bytes | memoryview) -> Any:
        view = memoryview(data)
        if not len(view):
            raise SerializationError("empty compressed payload")
        codec = _BY_TAG.get(view[0])
        if codec is None:
            raise SerializationError(f"unknown compression codec tag {view[0]}")
        payload = view[1:]
        limit = decompression_limit(len(payload), self.max_decompressed_size, self.max_ratio)
        return self.serializer.loads(_decompress(codec, payload, limit))


class CompressedJSONSerializer(CompressedSerializer):
    type = "compressed/json"  # type: ignore[assignment]

    def __init__(self, codec: str = "zlib", level: int | None = None, **limits: Any):
        super().__init__("json", codec, level, **limits)


class CompressedPickleSerializer(CompressedSerializer):
    type = "compressed/pickle"  # type: ignore[assignment]

    def __init__(self, codec: str = "zlib", level: int | None = None, **limits: Any):
        super().__init__("pickle", codec, level, **limits)


@hookimpl
def register_serializers(register):
    register(CompressedJSONSerializer)
    register(CompressedPickleSerializer)
