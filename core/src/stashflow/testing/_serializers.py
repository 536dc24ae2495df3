"""`SerializerTests`: the serializer contract, as tests a serializer's project subclasses.

Supply ``serializer`` (an instance) and ``values`` (a list of the values it
must round-trip) and subclass::

    class TestMySerializer(SerializerTests):
        @pytest.fixture
        def serializer(self):
            return MySerializer()

        @pytest.fixture
        def values(self):
            return [None, 1, "text", {"a": [1, 2]}]

Override ``corrupt_payloads`` if one of the default corrupt inputs is valid
for your format, ``unsupported_values`` to list values `dumps` must refuse
with SerializationError, ``large_values`` if none of the kit's generic large
values (a 9 MiB bytes, str, list or dict) is one your format holds, and
``assert_same`` if equality is not how your values compare.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import pytest

LARGE = 9 * 1024 * 1024  # past stashflow.records.STREAM_BYTES: the streaming path


def _generic_large_values() -> list[Any]:
    """Candidates for `large_values`: 9 MiB that do not compress (compressing formats stay big)."""
    import random

    rng = random.Random(9)
    return [
        rng.randbytes(LARGE),
        rng.randbytes(LARGE // 2).hex(),
        [rng.random() for _ in range(LARGE // 16)],
    ]


class SerializerTests:
    """The `Serializer` contract. Fixtures: ``serializer`` and ``values``."""

    def assert_same(self, loaded: Any, original: Any) -> None:
        """A value read back is the value written (equal, of the same type)."""
        assert loaded == original
        assert type(loaded) is type(original)

    @pytest.fixture
    def corrupt_payloads(self, serializer, values) -> list[bytes]:
        """Inputs `loads` must refuse: empty, garbage, and the front half of a real payload."""
        longest = max((serializer.dumps(v) for v in values), key=len)
        payloads = [b"", b"\x00\xff\xfe not a payload \x80\x81\x82"]
        if len(longest) >= 4:
            payloads.append(longest[: len(longest) // 2])
        return payloads

    @pytest.fixture
    def unsupported_values(self) -> list[Any]:
        """Values the format cannot hold; `dumps` must refuse them with SerializationError."""
        return []

    @pytest.fixture
    def large_values(self, serializer) -> list[Any]:
        """Values whose payload passes 8 MiB: by default the first of the kit's generic
        ones (9 MiB of bytes, of str, a list of floats) that the format holds that big."""
        from stashflow.exceptions import SerializationError
        from stashflow.records import STREAM_BYTES

        for value in _generic_large_values():
            try:
                if len(serializer.dumps(value)) > STREAM_BYTES:
                    return [value]
            except (SerializationError, TypeError, ValueError):
                continue
        return []

    def _is_same(self, loaded: Any, original: Any) -> bool:
        try:
            self.assert_same(loaded, original)
        except AssertionError:
            return False
        return True

    def _check(self, loaded: Any, original: Any, how: str) -> None:
        """assert_same, failing with what was called and on which value."""
        try:
            self.assert_same(loaded, original)
        except AssertionError as exc:
            raise AssertionError(f"{how} gave back {_short(loaded)} for the value "
                                 f"{_short(original)}: {exc}") from None

    @pytest.fixture
    def _values(self, values) -> list[Any]:
        assert values, "the `values` fixture must name at least one value to round-trip"
        return values

    # -- the class and its registration ----------------------------------------------

    def test_is_a_serializer_with_a_type_name(self, serializer):
        from stashflow.serializers import Serializer

        assert isinstance(serializer, Serializer)
        assert isinstance(serializer.type, str) and serializer.type
        assert len(serializer.type.encode("utf-8")) <= 255  # the record header's limit

    def test_the_registered_name_resolves_to_a_serializer_that_reads_it(self, serializer, _values,
                                                                        stashflow_home):
        from stashflow.registry import get_registry, resolve_serializer

        registered = get_registry().serializers.get(serializer.type)
        assert registered is not None, (
            f"no serializer is registered as {serializer.type!r}: is the plugin's `stashflow` "
            "entry point installed, and does register_serializers register the class?"
        )
        default = resolve_serializer(serializer.type)
        assert default.type == serializer.type
        for value in _values:
            self._check(default.loads(serializer.dumps(value)), value,
                        f"the registered {serializer.type!r} class's loads(dumps(value))")

    def test_instances_survive_pickling(self, serializer):
        # A ResultStore is pickled with its serializer for process pools and Dask workers.
        copy = pickle.loads(pickle.dumps(serializer))
        assert type(copy) is type(serializer) and copy == serializer

    # -- bytes ---------------------------------------------------------------------

    def test_dumps_returns_bytes(self, serializer, _values):
        for value in _values:
            data = serializer.dumps(value)
            assert type(data) is bytes, f"dumps({_short(value)}) returned {type(data).__name__}"

    def test_every_value_round_trips(self, serializer, _values):
        for value in _values:
            self._check(serializer.loads(serializer.dumps(value)), value, "loads(dumps(value))")

    def test_loads_takes_a_memoryview(self, serializer, _values):
        # Records hand payloads over as memoryviews of the bytes read (no copy).
        for value in _values:
            self._check(serializer.loads(memoryview(serializer.dumps(value))), value,
                        "loads(memoryview(dumps(value)))")

    def test_streaming_agrees_with_bytes(self, serializer, _values):
        for value in _values:
            buf = io.BytesIO()
            serializer.dump(value, buf)
            self._check(serializer.loads(buf.getvalue()), value, "loads(what dump wrote)")
            self._check(serializer.load(io.BytesIO(serializer.dumps(value))), value,
                        "load(a file of dumps(value))")
            buf.seek(0)
            self._check(serializer.load(buf), value, "load(what dump wrote)")

    # -- errors --------------------------------------------------------------------

    def test_corrupt_input_raises_an_exception(self, serializer, corrupt_payloads):
        for data in corrupt_payloads:
            with pytest.raises(Exception) as caught:
                serializer.loads(data)
            assert not isinstance(caught.value, (RecursionError, MemoryError, SystemError)), (
                f"loads({data[:20]!r}...) failed badly: {caught.value!r}"
            )

    def test_corrupt_payloads_are_serialization_errors_through_result_store(
            self, serializer, corrupt_payloads, stashflow_home):
        from datetime import UTC, datetime

        from stashflow.exceptions import SerializationError
        from stashflow.plugins import isolated_plugin_manager
        from stashflow.records import write_record
        from stashflow.results import ResultStore
        from stashflow.storage.memory import MemoryStorage

        storage = MemoryStorage(name=f"conformance-{id(self)}")
        store = ResultStore(storage, serializer, plugins=isolated_plugin_manager(),
                            signing_key=None)
        raw = _Raw(serializer.type)
        for i, data in enumerate(corrupt_payloads):
            # An intact record (right length and digest) whose payload the serializer refuses.
            buf = io.BytesIO()
            raw.data = data
            write_record(buf, None, raw, created=datetime.now(UTC))
            storage.write(f"corrupt-{i}", buf.getvalue())
            with pytest.raises(SerializationError, match=serializer.type):
                store.read(f"corrupt-{i}")
        storage.clear()

    def test_values_it_cannot_hold_raise_serialization_error(self, serializer, unsupported_values,
                                                             stashflow_home):
        from stashflow.exceptions import SerializationError
        from stashflow.plugins import isolated_plugin_manager
        from stashflow.results import ResultStore
        from stashflow.storage.memory import MemoryStorage

        storage = MemoryStorage(name=f"conformance-{id(self)}")
        store = ResultStore(storage, serializer, plugins=isolated_plugin_manager(), signing_key=None)
        for value in unsupported_values:
            with pytest.raises(SerializationError):
                serializer.dumps(value)
            with pytest.raises(SerializationError):
                serializer.dump(value, io.BytesIO())
            with pytest.raises(SerializationError):
                store.write("unsupported", value)
            assert not storage.exists("unsupported"), "a failed write left a record behind"
        storage.clear()

    # -- through ResultStore ---------------------------------------------------------

    def test_round_trip_through_result_store(self, serializer, _values, stashflow_home):
        from stashflow.results import ResultStore
        from stashflow.storage.memory import MemoryStorage

        storage = MemoryStorage(name=f"conformance-{id(self)}")
        writer = ResultStore(storage, serializer, signing_key=None)
        reader = ResultStore(storage, signing_key=None)  # no serializer: uses the record's name
        try:
            for i, value in enumerate(_values):
                meta = writer.write(f"value-{i}", value)
                assert meta.serializer == serializer.type
                self._check(writer.read(f"value-{i}"), value, "ResultStore.read")
                self._check(reader.read(f"value-{i}"), value,
                            "ResultStore.read by a store with no serializer of its own")
        finally:
            storage.clear()

    @pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
    def test_large_values_stream_through_a_result_store_on_disk(self, serializer, large_values,
                                                                 signed, tmp_path, stashflow_home):
        # Past 8 MiB a streaming serializer's dump writes into storage through a write-only
        # file, and its load reads a seekable view of just the payload (from a private
        # verified copy when signed): what plugins meet in the field, not a BytesIO.
        from stashflow.records import STREAM_BYTES
        from stashflow.registry import get_registry
        from stashflow.results import ResultStore

        assert large_values, (
            f"serializer {serializer.type!r} holds none of the kit's generic large values (9 MiB "
            "of bytes, str, list or dict): give a `large_values` fixture with values whose payload "
            "passes 8 MiB, so the streaming path is tested")
        storage = get_registry().url_schemes.get("file") and str(tmp_path / "large")
        if not storage:
            storage = f"memory://conformance-large-{id(self)}"
        store = ResultStore(storage, serializer, signing_key="kit key" if signed else None)
        for i, value in enumerate(large_values):
            meta = store.write(f"large-{i}", value)
            assert meta.size > STREAM_BYTES, (
                f"the payload of large_values[{i}] is {meta.size} bytes: not past the streaming "
                f"threshold ({STREAM_BYTES}); make it bigger")
            self._check(store.read(f"large-{i}"), value,
                        f"ResultStore.read of a {meta.size}-byte record (dump, then load)")


class _Raw:
    """Writes given bytes as the payload, under another serializer's name."""

    streaming = False

    def __init__(self, type_name: str):
        self.type = type_name
        self.data = b""

    def dumps(self, obj: Any) -> bytes:
        return self.data

    def dump(self, obj: Any, file) -> None:
        file.write(self.data)


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({type(value).__name__})"
