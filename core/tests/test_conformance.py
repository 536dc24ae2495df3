"""Core's built-ins pass the plugin authors' kit: memory storage, the three
serializers and the standard cache policies."""

import dataclasses
import datetime
import decimal
import enum
import threading
import uuid
from pathlib import PurePosixPath

import pytest
from stashflow import cache_policies
from stashflow.serializers._builtin import JSONSerializer, MsgpackSerializer, PickleSerializer
from stashflow.storage.memory import MemoryStorage
from stashflow.testing import CachePolicyTests, SerializerTests, StorageBackendTests

JSON_VALUES = [
    None, True, False, 0, -1, 2**62, 1.5, -0.25, "", "text", "\u00fcn\u00efc\u00f6d\u00e9 \u540d\u524d",
    [], {}, [1, "two", None, [3.0]], {"nested": {"list": [1, 2, {"deep": True}]}, "n": 1},
]


class TestMemoryStorage(StorageBackendTests):
    @pytest.fixture
    def backend(self):
        backend = MemoryStorage(name=f"conformance-{uuid.uuid4().hex}")
        yield backend
        backend.clear()


class Colour(enum.Enum):
    RED = 1


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


class TestPickleSerializer(SerializerTests):
    @pytest.fixture
    def serializer(self):
        return PickleSerializer()

    @pytest.fixture
    def unsupported_values(self):
        return [threading.Lock(), lambda: 1, [1, (x for x in ())]]

    @pytest.fixture
    def values(self):
        return [*JSON_VALUES, b"\x00bytes", bytearray(b"ba"), (1, "tuple"), {1, 2}, frozenset("ab"),
                {(1, 2): "tuple keys"}, datetime.datetime(2026, 11, 24, 10, 0, tzinfo=datetime.UTC),
                decimal.Decimal("1.10"), uuid.UUID(int=7), PurePosixPath("a/b"), Colour.RED,
                Point(1, 2), complex(1, 2), b"x" * (3 * 1024 * 1024)]


class TestJSONSerializer(SerializerTests):
    @pytest.fixture
    def serializer(self):
        return JSONSerializer()

    @pytest.fixture
    def unsupported_values(self):
        return [object(), threading.Lock(), {"nested": [datetime.date(2026, 1, 1), object()]},
                Colour.RED, {1: lambda: 1}]

    @pytest.fixture
    def values(self):
        # plain JSON, the tagged types, and dicts of yours that look like tags
        return [*JSON_VALUES, b"\x00bytes", bytearray(b"ba"), (1, "tuple"), {1, 2},
                frozenset("ab"), {(1, 2): "tuple keys", 3: "int key"},
                datetime.datetime(2026, 11, 24, 10, 0, tzinfo=datetime.UTC),
                datetime.date(2026, 1, 1), datetime.timedelta(days=1, microseconds=5),
                decimal.Decimal("1.10"), uuid.UUID(int=7), PurePosixPath("a/b"), complex(1, 2),
                {"$bytes": "not a tag"}, {"rows": [(1, b"a"), {"$set": [1]}]}]


class TestMsgpackSerializer(SerializerTests):
    @pytest.fixture
    def serializer(self):
        return MsgpackSerializer()

    @pytest.fixture
    def unsupported_values(self):
        return [{1, 2}, object(), 2**64, [1, object()]]

    @pytest.fixture
    def values(self):
        return [*JSON_VALUES, b"\x00bytes", {1: "int keys", 2: [b"raw"]}, -(2**63), 2**64 - 1]


INPUTS = [
    {},
    {"x": 1},
    {"x": 1.0},
    {"x": "1"},
    {"x": b"1"},
    {"x": True},
    {"x": None},
    {"x": 1, "y": 2},
    {"x": 2, "y": 1},
    {"x": {"b", "a", "c"}},
    {"x": frozenset({"a", "b"})},
    {"x": {"k": [1, 2], "j": {"z", "y"}}},
    {"x": (1, 2)},
    {"x": [1, 2]},
    {"x": Point(1, 2)},
    {"x": Colour.RED},
    {"x": datetime.date(2026, 11, 24)},
    {"x": float("nan")},
]


class TestInputsPolicy(CachePolicyTests):
    @pytest.fixture
    def policy(self):
        return cache_policies.INPUTS

    @pytest.fixture
    def inputs(self):
        return INPUTS


class TestInputsWithAnExclusion(CachePolicyTests):
    @pytest.fixture
    def policy(self):
        return cache_policies.INPUTS - "verbose"

    @pytest.fixture
    def inputs(self):
        return [{**i, "verbose": True} for i in INPUTS]


class TestInputsAndTaskSource(CachePolicyTests):
    @pytest.fixture
    def policy(self):
        return cache_policies.INPUTS + cache_policies.TASK_SOURCE

    @pytest.fixture
    def inputs(self):
        return INPUTS


class TestDefaultPolicy(CachePolicyTests):
    @pytest.fixture
    def policy(self):
        return cache_policies.DEFAULT

    @pytest.fixture
    def inputs(self):
        return INPUTS


@pytest.mark.parametrize("name", ["task_source", "flow_parameters", "run_id", "no_cache"])
class TestInputIndependentPolicies(CachePolicyTests):
    keys_differ_by_input = False

    @pytest.fixture
    def policy(self, name):
        return cache_policies.BUILTIN_POLICIES[name]

    @pytest.fixture
    def inputs(self):
        return INPUTS[:4]


def test_input_independent_policies_follow_what_they_hash():
    from stashflow.testing._cache_policies import sample_context

    a, b = sample_context("a" * 32), sample_context("b" * 32)
    assert cache_policies.RUN_ID.compute_key(a, {}, None) != cache_policies.RUN_ID.compute_key(b, {}, None)
    flow = cache_policies.FLOW_PARAMETERS
    assert flow.compute_key(a, {}, {"day": 1}) != flow.compute_key(a, {}, {"day": 2})
    assert cache_policies.NO_CACHE.compute_key(a, {"x": 1}, None) is None


BROKEN = '''
import io, threading, time
import pytest
from stashflow.storage.memory import MemoryStorage
from stashflow.serializers._builtin import JSONSerializer
from stashflow.cache_policies import CachePolicy
from stashflow.testing import CachePolicyTests, SerializerTests, StorageBackendTests

class Broken(MemoryStorage):
    type_slug = "memory"

    def create(self, key, data):  # check, then write: not atomic
        if self.exists(key):
            return False
        time.sleep(0.05)
        self.write(key, data)
        return True

    def write(self, key, data):  # in place, in two steps: a reader can see half
        data = data if isinstance(data, (bytes, bytearray, memoryview)) else data.read()
        self._space[key] = bytes(data[: len(data) // 2])
        time.sleep(0.001)
        self._space[key] = bytes(data)

    def delete(self, key):
        del self._space[key]  # KeyError when missing

class TestBroken(StorageBackendTests):
    @pytest.fixture
    def backend(self):
        return Broken(name="broken")

class Unpicklable(MemoryStorage):
    type_slug = "memory"

    def write(self, key, data):
        self._connection = threading.Lock()  # a client kept on the instance once used
        super().write(key, data)

class TestUnpicklable(StorageBackendTests):
    @pytest.fixture
    def backend(self):
        return Unpicklable(name="unpicklable")

class _SloppySeek(io.BytesIO):
    def seek(self, offset, whence=0):  # treats "from the end" as "from the start"
        return super().seek(abs(offset), 0)

class SloppySeek(MemoryStorage):
    type_slug = "memory"

    def open_read(self, key):
        return _SloppySeek(self.read(key))

class TestSloppySeek(StorageBackendTests):
    @pytest.fixture
    def backend(self):
        return SloppySeek(name="sloppy")

class Truncating(JSONSerializer):
    streaming = True

    def dump(self, obj, file):  # streaming a large value loses its last byte
        data = self.dumps(obj)
        file.write(data[:-1] if len(data) > 8 * 1024 * 1024 else data)

    def load(self, file):
        return self.loads(file.read())

class TestTruncating(SerializerTests):
    @pytest.fixture
    def serializer(self):
        return Truncating()

    @pytest.fixture
    def values(self):
        return [1, "small"]

class Lossy(JSONSerializer):
    def loads(self, data):
        return None if not bytes(data) else super().loads(data)

class TestLossy(SerializerTests):
    @pytest.fixture
    def serializer(self):
        return Lossy()

    @pytest.fixture
    def values(self):
        return [1.5, {"a": 1}]

class HashPolicy(CachePolicy):  # hash() of a str changes with PYTHONHASHSEED
    def compute_key(self, context, inputs, flow_parameters):
        return format(hash(repr(sorted(inputs.items()))) & 0xFFFFFFFF, "x")

class TestHashPolicy(CachePolicyTests):
    @pytest.fixture
    def policy(self):
        return HashPolicy()

    @pytest.fixture
    def inputs(self):
        return [{"x": "a"}, {"x": "b"}]
'''


def test_the_kit_fails_plugins_that_break_the_contract(tmp_path):
    import subprocess
    import sys

    (tmp_path / "test_broken.py").write_text(BROKEN)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider",
                          "-k", "create or partial or missing or corrupt or delete or hash_seeds "
                                "or pickling or seeking or large",
                          str(tmp_path / "test_broken.py")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    failed = {line.split("::")[-1].split(" ")[0] for line in out.stdout.splitlines()
              if line.startswith("FAILED")}
    assert {
        "test_racing_creates_have_exactly_one_winner",
        "test_a_reader_never_sees_a_partial_object",
        "test_deleting_a_missing_key_is_a_no_op",
        "test_corrupt_input_raises_an_exception",
        "test_keys_are_stable_across_processes_and_hash_seeds",
    } <= failed, out.stdout[-3000:]
    # each new test fails the plugin it is about, and says what is wrong
    by_class = {line.split("::")[1]: line for line in out.stdout.splitlines()
                if line.startswith("FAILED")}
    assert "test_a_used_backend_survives_pickling" in by_class["TestUnpicklable"]
    assert "failed once the backend was used" in out.stdout
    assert "test_a_seeking_load_of_a_large_record_sees_exactly_its_payload" in by_class["TestSloppySeek"]
    assert "test_large_values_stream_through_a_result_store_on_disk" in by_class["TestTruncating"]
    assert "large-0" in out.stdout and "serializer 'json'" in out.stdout
