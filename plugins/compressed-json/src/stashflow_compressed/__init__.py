"""Compressed serializers: `compressed/json` and `compressed/pickle`.

`CompressedSerializer(serializer="json", codec="zlib", level=None)` wraps any
registered serializer. The payload starts with one byte naming the codec from
a fixed table, so a record written with lzma reads back with a default
instance; no stored byte ever names code to import.
"""

from __future__ import annotations

import importlib
from typing import Any

from stashflow import hookimpl
from stashflow.exceptions import SerializationError
from stashflow.serializers import Serializer, resolve_serializer

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


def _decompress(codec: str, data: bytes | memoryview) -> bytes:
    module = _module(codec)
    if codec == "zstd":
        return module.ZstdDecompressor().decompress(bytes(data))
    return module.decompress(data)


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
                 level: int | None = None):
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
        self.serializer = resolve_serializer(serializer)
        if isinstance(self.serializer, CompressedSerializer):
            raise ValueError("a CompressedSerializer cannot wrap another one")
        self.codec = codec
        self.level = CODECS[codec][2] if level is None else level

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
        return self.serializer.loads(_decompress(codec, view[1:]))


class CompressedJSONSerializer(CompressedSerializer):
    type = "compressed/json"  # type: ignore[assignment]

    def __init__(self, codec: str = "zlib", level: int | None = None):
        super().__init__("json", codec, level)


class CompressedPickleSerializer(CompressedSerializer):
    type = "compressed/pickle"  # type: ignore[assignment]

    def __init__(self, codec: str = "zlib", level: int | None = None):
        super().__init__("pickle", codec, level)


@hookimpl
def register_serializers(register):
    register(CompressedJSONSerializer)
    register(CompressedPickleSerializer)
