"""The compressed serializers pass the plugin authors' kit, with every stdlib codec."""

import base64
import random

import pytest
from stashflow.testing import SerializerTests
from stashflow_compressed import CompressedJSONSerializer, CompressedPickleSerializer

# 12 MiB of base64 text: it compresses to about 9 MiB, past the 8 MiB streaming threshold.
LARGE_TEXT = base64.b64encode(random.Random(7).randbytes(9 * 1024 * 1024)).decode()
# lzma's default preset takes ~7 s on that much; the level is not what the kit tests.
LEVELS = {"lzma": 0}

JSON_VALUES = [None, True, 0, -7, 2**70, 1.25, "", "text \u540d\u524d", [], {},
               [1, "two", None], {"nested": {"list": [1, 2, {"deep": True}]}}, ["spam"] * 5000]


@pytest.mark.parametrize("codec", ["zlib", "bz2", "lzma"])
class TestCompressedJSON(SerializerTests):
    @pytest.fixture
    def serializer(self, codec):
        return CompressedJSONSerializer(codec=codec, level=LEVELS.get(codec))

    @pytest.fixture
    def values(self):
        return [*JSON_VALUES, {1, 2}, b"bytes", (1, "tuple")]  # json's tagged types too

    @pytest.fixture
    def large_values(self):
        return [LARGE_TEXT]

    @pytest.fixture
    def unsupported_values(self):
        return [object(), [1, object()]]


@pytest.mark.parametrize("codec", ["zlib", "bz2", "lzma"])
class TestCompressedPickle(SerializerTests):
    @pytest.fixture
    def serializer(self, codec):
        return CompressedPickleSerializer(codec=codec, level=LEVELS.get(codec))

    @pytest.fixture
    def large_values(self):
        return [LARGE_TEXT]

    @pytest.fixture
    def values(self):
        return [*JSON_VALUES, b"\x00bytes", (1, 2), {1, 2}, frozenset("ab"), b"x" * (2 * 1024 * 1024)]
