"""The json serializer: plain JSON as it is, a fixed table of tagged types, nothing
imported on read, dataclasses and pydantic models as their fields and `revive` to turn
them back into the model an annotation names. The rules: docs/concepts/serializers.md."""

from __future__ import annotations

import builtins
import collections
import dataclasses
import datetime as dt
import enum
import importlib
import json
import math
import os
import pathlib
import subprocess
import sys
import threading
import typing
import uuid
import zoneinfo
from decimal import Decimal

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stashflow import serializers
from stashflow.exceptions import SerializationError
from stashflow.results import ResultStore
from stashflow.serializers import revive
from stashflow.serializers._builtin import JSONSerializer

S = JSONSerializer()


def round_trip(value):
    return S.loads(S.dumps(value))


def assert_same(got, want):
    """`got` is `want`: the same type at every level, equal values (NaN is NaN, -0.0 is
    not 0.0, a Decimal keeps its digits, a datetime its fold and offset), dicts in order."""
    assert type(got) is type(want), f"{got!r} is a {type(got).__name__}, not {type(want).__name__}"
    if isinstance(want, float):
        assert (math.isnan(got) and math.isnan(want)) or (
            got == want and math.copysign(1, got) == math.copysign(1, want)), (got, want)
    elif isinstance(want, complex):
        assert_same(got.real, want.real)
        assert_same(got.imag, want.imag)
    elif isinstance(want, Decimal):
        assert str(got) == str(want)
    elif isinstance(want, dt.datetime | dt.time):
        assert (got.fold, got.utcoffset(), got.replace(tzinfo=None, fold=0)) == (
            want.fold, want.utcoffset(), want.replace(tzinfo=None, fold=0))
    elif isinstance(want, dict):
        assert len(got) == len(want)
        for (gk, gv), (wk, wv) in zip(got.items(), want.items(), strict=True):
            assert_same(gk, wk)
            assert_same(gv, wv)
    elif isinstance(want, list | tuple):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same(g, w)
    elif isinstance(want, set | frozenset):
        assert len(got) == len(want)
        for g, w in zip(sorted(got, key=S.dumps), sorted(want, key=S.dumps), strict=True):
            assert_same(g, w)
    else:
        assert got == want


UTC_PLUS_0530 = dt.timezone(dt.timedelta(hours=5, minutes=30))

TAGGED = {
    "bytes": b"\x00\xffbytes",
    "empty bytes": b"",
    "bytearray": bytearray(b"\x01ba"),
    "tuple": (1, "two", None, (3.5,)),
    "empty tuple": (),
    "set": {1, 2, 3},
    "set of str": {"b", "a", "c"},
    "frozenset": frozenset({"x", "y"}),
    "empty set": set(),
    "complex": complex(1.5, -2),
    "complex nan": complex(float("nan"), float("-inf")),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "naive datetime": dt.datetime(2026, 11, 24, 10, 0, 5, 123456),
    "utc datetime": dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC),
    "offset datetime": dt.datetime(2026, 1, 1, 23, 59, tzinfo=UTC_PLUS_0530),
    "folded naive datetime": dt.datetime(2024, 11, 3, 1, 30, fold=1),
    "date": dt.date(2026, 1, 1),
    "time": dt.time(23, 59, 59, 999999),
    "aware time": dt.time(8, 0, tzinfo=UTC_PLUS_0530),
    "folded time": dt.time(1, 30, fold=1),
    "timedelta": dt.timedelta(days=1, microseconds=5),
    "negative timedelta": -dt.timedelta(days=3, seconds=1),
    "decimal": Decimal("1.10"),
    "decimal -0": Decimal("-0"),
    "decimal NaN": Decimal("NaN"),
    "decimal -NaN payload": Decimal("-NaN123"),
    "decimal sNaN": Decimal("sNaN"),
    "decimal inf": Decimal("-Infinity"),
    "decimal exponent": Decimal("1E+2"),
    "posix path": pathlib.PurePosixPath("a/b c"),
    "windows path": pathlib.PureWindowsPath(r"C:\Users\x"),
    "concrete path": pathlib.Path("relative/file.txt"),
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "-0.0": -0.0,
    "huge int": 7**6000,
    "huge negative int": -(10**4300),
    "lone surrogate": "file-\udcff-name",
    "int keys": {1: "a", 2: "b"},
    "mixed keys": {None: 0, True: 1, 2.5: 2, "s": 3, (1, 2): 4, b"k": 5, frozenset({1}): 6},
    "tagged keys": {dt.date(2026, 1, 1): 1, uuid.UUID(int=1): 2, Decimal("1.5"): 3,
                    10**5000: 4, float("nan"): 5, (b"a", (1, 2)): 6},
    "a dict that looks like a tag": {"$bytes": "not base64!"},
    "a dict that looks like $dict": {"$dict": [[1, 2]]},
    "a dict keyed $": {"$": None},
    "a tag-looking dict in a list": [{"$set": [1]}, {"$tuple": []}],
    "two keys, one with $": {"$bytes": "x", "other": 1},
    "tuple in a set": {(1, 2), (3, "4")},
    "frozensets in a frozenset": frozenset({frozenset({1}), frozenset({1, 2}), frozenset()}),
    "bytes in a set": {b"a", b"b"},
    "mixed set": {1, "a", b"b", (1,), None, 2.5, float("nan")},
    "nested": {"rows": [(1, b"a"), {"$set": [1]}, {frozenset({(1, b"x")})}],
               "when": [dt.datetime(2026, 1, 1), None]},
}


@pytest.mark.parametrize("value", TAGGED.values(), ids=TAGGED.keys())
def test_every_tagged_type_round_trips_exactly(value):
    assert_same(round_trip(value), value)
    # and what is read back is written as the same bytes
    assert S.dumps(round_trip(value)) == S.dumps(value)


def test_a_tag_is_one_key_object_that_other_readers_can_parse():
    assert S.dumps(b"\x00") == b'{"$bytes":"AA=="}'
    assert S.dumps((1, 2)) == b'{"$tuple":[1,2]}'
    assert S.dumps({"b", "a"}) == b'{"$set":["a","b"]}'
    assert S.dumps({1: "a"}) == b'{"$dict":[[1,"a"]]}'
    assert S.dumps(float("nan")) == b'{"$float":"nan"}'
    assert S.dumps(dt.datetime(2024, 11, 3, 1, 30, fold=1)) == b'{"$datetime":["2024-11-03T01:30:00",1]}'
    # standard JSON everywhere: no NaN, no Infinity
    for value in TAGGED.values():
        json.loads(S.dumps(value), parse_constant=lambda name: pytest.fail(f"wrote {name}"))


PLAIN = [None, True, 0, -1, 2**62, 1.5, -0.0, 1e308, "", "ünïcödé 名前", [], {}, [1, [2, [3]]],
         {"a": {"b": [1, 2, {"c": None}]}, "$not alone": 1, "n": 2.5}]


@pytest.mark.parametrize("value", PLAIN)
def test_plain_json_is_written_as_json_dumps_writes_it(value):
    assert S.dumps(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    assert_same(round_trip(value), value)


def test_payloads_of_the_plain_json_serializer_still_read():
    assert S.loads(b'{"a":[1,2.5,null,"x"]}') == {"a": [1, 2.5, None, "x"]}
    assert math.isnan(S.loads(b"NaN")) and S.loads(b"[-Infinity]") == [float("-inf")]


def test_an_aware_datetime_keeps_its_instant_and_offset_not_its_zone():
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    for value in (dt.datetime(2026, 7, 1, 12, tzinfo=paris),
                  # the repeated hour, second time round: fold=1 picks the offset
                  dt.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("America/New_York"))):
        back = round_trip(value)
        assert type(back) is dt.datetime and type(back.tzinfo) is dt.timezone
        assert back.utcoffset() == value.utcoffset() and back.fold == value.fold
        assert back.astimezone(dt.UTC) == value.astimezone(dt.UTC)
    assert round_trip(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)).tzinfo is dt.UTC


class Level(enum.IntEnum):
    LOW = 1


class Mode(enum.StrEnum):
    FAST = "fast"


class Name(str):
    pass


class Ratio(float):
    pass


class Big(int):
    pass


class Rows(list):
    pass


Pair = collections.namedtuple("Pair", "left right")


@pytest.mark.parametrize("value, expected", [
    (Level.LOW, 1),
    (Mode.FAST, "fast"),
    (Name("n"), "n"),
    (Ratio(0.5), 0.5),
    (Ratio("nan"), float("nan")),
    (Big(10**5000), 10**5000),
    ([Level.LOW, Mode.FAST], [1, "fast"]),
    ({Mode.FAST: Level.LOW}, {"fast": 1}),  # str subclass keys are str keys
    ({Level.LOW: "x"}, {1: "x"}),
    ({Level.LOW, 2}, {1, 2}),
    (Pair(1, b"x"), (1, b"x")),
    (Rows([1, (2,)]), [1, (2,)]),
    (collections.OrderedDict(b=1, a=2), {"b": 1, "a": 2}),
    (collections.defaultdict(list, {"a": [1]}), {"a": [1]}),
    (collections.Counter("aab"), {"a": 2, "b": 1}),
    ({"$x": collections.OrderedDict({"$y": 1})}, {"$x": {"$y": 1}}),
    (type(pathlib.Path())("sub/class"), pathlib.Path("sub/class")),
], ids=lambda v: type(v).__name__)
def test_subclasses_are_written_as_their_base_type(value, expected):
    assert_same(round_trip(value), expected)


def test_the_same_value_gives_the_same_bytes_whatever_the_hash_seed():
    script = (
        "import sys, datetime, decimal; from stashflow.serializers._builtin import JSONSerializer\n"
        "s = JSONSerializer()\n"
        "values = [{'b', 'a', 'c', 'zz', 'q'}, frozenset('hash seed'), {1, 'a', b'b', None, (1, 'x')},\n"
        "          {frozenset({'a'}), frozenset({'a', 'b'}), frozenset({'c'})}, {('x', 'y'), ('y',)},\n"
        "          {float('nan'), 1.5, decimal.Decimal('NaN')}, {'k': {'v', 'w'}, ('t',): {b'x', b'y'}},\n"
        "          {datetime.date(2026, 1, d) for d in range(1, 9)}]\n"
        "sys.stdout.write(b''.join(s.dumps(v) + b'\\n' for v in values).hex())\n"
    )
    outputs = set()
    for seed in ("0", "1", "2", "12345", "random"):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, check=True, timeout=60)
        outputs.add(out.stdout)
    assert len(outputs) == 1


# -- hypothesis: nested structures of every type ---------------------------------------

FIXED_ZONES = st.sampled_from([None, dt.UTC, UTC_PLUS_0530, dt.timezone(-dt.timedelta(hours=8))])
TEXT = st.text(alphabet=st.one_of(st.characters(), st.sampled_from("$\"\\\udc80\udcff")), max_size=8)
HASHABLE_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.builds(lambda n, sign: sign * (10**4300 + n), st.integers(0, 2**64), st.sampled_from([1, -1])),
    st.floats(), TEXT, st.binary(max_size=8), st.complex_numbers(), st.uuids(),
    st.builds(lambda d, fold: d.replace(fold=fold), st.datetimes(timezones=FIXED_ZONES),
              st.integers(0, 1)),
    st.dates(), st.builds(lambda t, fold: t.replace(fold=fold), st.times(timezones=FIXED_ZONES),
                          st.integers(0, 1)),
    st.timedeltas(), st.decimals(allow_nan=False), st.sampled_from([Decimal("NaN"), Decimal("-0")]),
    st.builds(pathlib.PurePosixPath, TEXT), st.builds(pathlib.PureWindowsPath, st.text(max_size=8)),
)
HASHABLE = st.recursive(HASHABLE_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4).map(tuple), st.frozensets(inner, max_size=4)), max_leaves=10)
LEAVES = st.one_of(HASHABLE_LEAVES, st.binary(max_size=8).map(bytearray),
                   st.just(Decimal("sNaN")))
VALUES = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.lists(inner, max_size=4).map(tuple),
    st.dictionaries(TEXT, inner, max_size=4),
    st.dictionaries(st.sampled_from(["$bytes", "$dict", "$", "$os.system", "__class__"]), inner,
                    max_size=1),
    st.dictionaries(HASHABLE, inner, max_size=4),
    st.sets(HASHABLE, max_size=4),
    st.frozensets(HASHABLE, max_size=4),
), max_leaves=30)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALUES)
def test_nested_values_of_every_type_round_trip(value):
    data = S.dumps(value)
    assert_same(S.loads(data), value)
    assert S.dumps(S.loads(data)) == data


# -- reading imports nothing; unknown tags are data, bad payloads are refused ----------------------


def load_importing_nothing(payload: bytes):
    """S.loads(payload), or the exception it raised, with every import (statement,
    __import__, importlib.import_module) refused while it runs; and none was tried."""
    round_trip(list(TAGGED.values()))  # the codec and what it uses, loaded before
    before = set(sys.modules)
    tried = []

    def refuse(name, *args, **kwargs):
        tried.append(name)
        raise ImportError(f"reading tried to import {name}")

    real_import, real_import_module = builtins.__import__, importlib.import_module
    builtins.__import__ = importlib.import_module = refuse
    try:
        result = S.loads(payload)
    except Exception as exc:
        result = exc
    finally:
        builtins.__import__, importlib.import_module = real_import, real_import_module
    assert tried == []
    assert set(sys.modules) == before
    assert "antigravity" not in sys.modules
    return result


@pytest.mark.parametrize("payload", [
    b'{"$os.system": "echo pwned"}',
    b'{"\\u0024os.system": "echo pwned"}',  # the $ escaped
    b'{"$antigravity": 1}',
    b'{"$builtins.eval": "1"}',
    b'[1, {"k": {"$subprocess.Popen": ["ls"]}}]',
    b'{"$__class__": "os.system"}',
])
def test_unknown_tags_read_as_the_plain_dicts_they_are_and_import_nothing(payload):
    # (a dict read back as a set element is still refused: see the malformed payloads)
    result = load_importing_nothing(payload)
    assert result == json.loads(payload)  # data, as the json serializer before tags read it


@pytest.mark.parametrize("payload, expected", [
    # what Prefect's reader imports (and, for __exc_type__, calls)
    (b'{"__class__": "os.system", "data": "echo pwned"}', {"__class__": "os.system", "data": "echo pwned"}),
    (b'{"__class__": "antigravity.geohash", "data": [1, {"$tuple": [2]}]}',
     {"__class__": "antigravity.geohash", "data": [1, (2,)]}),
    (b'{"__exc_type__": "subprocess.Popen", "message": "ls"}',
     {"__exc_type__": "subprocess.Popen", "message": "ls"}),
    (b'{"$dict": [["$antigravity", "x"]]}', {"$antigravity": "x"}),
    (b'{"$bytes": "eA==", "__class__": "os.system"}', {"$bytes": "eA==", "__class__": "os.system"}),
])
def test_names_in_the_data_read_as_data_and_import_nothing(payload, expected):
    assert load_importing_nothing(payload) == expected


@pytest.mark.parametrize("payload", [
    b'{"$set": [{"$pickle": "gASVAAAAAA=="}]}',
    b'{"$bytes": 1}', b'{"$bytes": "not base64!"}', b'{"$bytearray": null}',
    b'{"$tuple": "ab"}', b'{"$set": {"a": 1}}', b'{"$set": [[1]]}', b'{"$frozenset": [{"a": 1}]}',
    b'{"$dict": {"a": 1}}', b'{"$dict": [[1]]}', b'{"$dict": [[[1], 2]]}', b'{"$dict": [1]}',
    b'{"$int": 16}', b'{"$int": "0x10"}', b'{"$int": " ff"}', b'{"$int": "zz"}',
    b'{"$float": "1.5"}', b'{"$float": "NaN"}', b'{"$complex": [1]}', b'{"$complex": ["a", 1]}',
    b'{"$uuid": "x"}', b'{"$uuid": 5}', b'{"$datetime": "yesterday"}', b'{"$datetime": ["2026-01-01", 2]}',
    b'{"$datetime": ["2026-01-01", true]}', b'{"$date": 20260101}', b'{"$time": "25:00"}',
    b'{"$timedelta": [1.5, 0, 0]}', b'{"$timedelta": [1000000000, 0, 0]}', b'{"$timedelta": [1, 2]}',
    b'{"$decimal": "abc"}', b'{"$decimal": 1.5}', b'{"$pureposixpath": ["a"]}',
    b'{"$windowspath" : "C:\\\\x"}' if os.name != "nt" else b'{"$posixpath": "/x"}',
    b"[" * 100_000 + b"]" * 100_000, b'{"a": ' * 100_000,
    b"\xff\xfe", b"", b"{", b'{"$bytes": "AA=="',
])
def test_malformed_payloads_are_serialization_errors_and_import_nothing(payload):
    result = load_importing_nothing(payload)
    assert isinstance(result, SerializationError), result
    assert "not a payload of the json serializer" in str(result)


def test_every_tagged_type_reads_importing_nothing():
    for value in TAGGED.values():
        assert_same(load_importing_nothing(S.dumps(value)), value)


class Colour(enum.Enum):
    RED = 1


@dataclasses.dataclass(frozen=True)
class Frozen:
    x: int


def _cycle():
    a: list = []
    a.append(a)
    return a


def _deep():
    value: list = []
    for _ in range(100_000):
        value = [value]
    return value


@pytest.mark.parametrize("value, named", [
    (object(), "object"),
    (Colour.RED, "Colour"),
    ({"nested": [dt.date(2026, 1, 1), Colour.RED]}, "Colour"),
    (threading.Lock(), "lock"),
    (lambda: 1, "function"),
    ((x for x in ()), "generator"),
    (memoryview(b"x"), "memoryview"),
    ({1: object()}, "object"),
    ({Frozen(1)}, "Frozen as a set element or dict key"),
    ({Frozen(1): 1}, "Frozen as a set element or dict key"),
    ({(1, Frozen(1))}, "tuple as a set element"),
    (_cycle(), "contains itself"),
    (_deep(), "nested too deeply"),
    ("\ud83d\ude00", "surrogate pair"),
])
def test_unsupported_values_raise_serialization_error_naming_the_type(value, named):
    with pytest.raises(SerializationError, match=named):
        S.dumps(value)


# -- dataclasses and pydantic models: written as fields, revived by annotation -------------


class Item(pydantic.BaseModel):
    name: str
    price: Decimal
    when: dt.datetime
    tags: list[str] = []
    level: Level = Level.LOW
    code: int = pydantic.Field(0, alias="itemCode")


class Binary(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(ser_json_bytes="base64", val_json_bytes="base64", strict=True)
    data: bytes


class Numbers(pydantic.RootModel[list[int]]):
    pass


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Shape:
    name: str
    points: list[Point]
    origin: Point | None = None
    item: Item | None = None
    by_name: dict[str, Point] = dataclasses.field(default_factory=dict)
    extent: tuple[Point, ...] = ()
    level: Level = Level.LOW
    area: float = dataclasses.field(init=False, default=0.0)
    raw: bytes = b""


ITEM = Item(name="pen", price=Decimal("1.10"), when=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            tags=["a"], itemCode=7)


def _shape():
    shape = Shape("tri", [Point(0, 0), Point(1, 0)], Point(0, 1), ITEM, {"p": Point(2, 2)},
                  (Point(3, 3),), Level.LOW, raw=b"\xff")
    shape.area = 0.5
    return shape


def test_a_dataclass_is_written_as_its_fields_and_read_back_as_a_dict():
    assert S.dumps(Point(1, 2)) == b'{"x":1,"y":2}'
    assert_same(round_trip(Point(1, 2)), {"x": 1, "y": 2})
    assert round_trip([Point(1, 2), (Point(3, 4),)]) == [{"x": 1, "y": 2}, ({"x": 3, "y": 4},)]


def test_a_pydantic_model_is_written_as_its_json_and_read_back_as_a_dict():
    assert json.loads(S.dumps(ITEM)) == {"name": "pen", "price": "1.10", "when": "2026-01-01T00:00:00Z",
                                         "tags": ["a"], "level": 1, "itemCode": 7}
    assert round_trip(ITEM) == json.loads(ITEM.model_dump_json(by_alias=True))
    assert round_trip(Numbers([1, 2])) == [1, 2]


@pytest.mark.parametrize("value, annotation", [
    (ITEM, Item),
    (Point(1, 2), Point),
    ([ITEM, ITEM], list[Item]),
    ([Point(1, 2)], typing.List[Point]),  # noqa: UP006 - the old spelling too
    ({"a": ITEM, "b": ITEM}, dict[str, Item]),
    ({"a": Point(1, 2)}, typing.Mapping[str, Point]),
    (ITEM, Item | None),
    (Point(1, 2), typing.Optional[Point]),  # noqa: UP045
    (None, Item | None),
    ((ITEM, ITEM), tuple[Item, ...]),
    ((Point(1, 2), 3), tuple[Point, int]),
    (_shape(), Shape),
    ([_shape()], list[Shape]),
    (Point(1, 2), typing.Annotated[Point, "meta"]),
    (Point(1, 2), int | Point),
    (5, int | Point),
    (Level.LOW, Level),
    ({Level.LOW: [Point(1, 2)]}, dict[Level, list[Point]]),
    ({Level.LOW}, set[Level]),
    (Binary(data=b"\x00\xff"), Binary),
    (Numbers([1, 2]), Numbers),
    ({"k": [ITEM]}, dict[str, list[Item]] | None),
])
def test_revive_turns_what_was_read_back_into_the_annotated_type(value, annotation):
    back = revive(round_trip(value), annotation)
    assert back == value
    assert type(back) is type(value)


def test_revive_revives_nested_dataclass_fields():
    back = revive(round_trip(_shape()), Shape)
    assert type(back.points[0]) is Point and type(back.origin) is Point
    assert type(back.item) is Item and back.item.when.tzinfo is not None
    assert type(back.by_name["p"]) is Point and type(back.extent) is tuple
    assert type(back.level) is Level and back.area == 0.5 and back.raw == b"\xff"


def test_revive_through_a_result_store(tmp_path):
    store = ResultStore(tmp_path, "json")
    store.write("shape", _shape())
    assert revive(store.read("shape"), Shape) == _shape()


def test_revive_leaves_everything_else_as_it_is():
    values = [1, 2, 3]
    assert revive(values, list[int]) is values
    assert revive(values, typing.Any) is values
    assert revive(values, "list[Point]") is values  # an unresolved forward reference
    assert revive({"x": 1, "y": 2}, dict) == {"x": 1, "y": 2}
    assert revive({"x": 1, "y": 2}, dict[str, int] | Point) == {"x": 1, "y": 2}
    point = Point(1, 2)
    assert revive(point, Point) is point  # already one (pickle read it)
    assert revive(None, Point) is None


@pytest.mark.parametrize("value, annotation", [
    ({"x": 1}, Point),  # a field missing
    ({"x": 1, "y": 2, "z": 3}, Point),  # a field too many
    ([1, 2], Point),  # not a dict
    ({"name": "pen"}, Item),
    ({"name": "pen", "price": "not a number", "when": "2026-01-01T00:00:00Z"}, Item),
    ([{"x": 1}], list[Point]),
    ({"a": {"y": 1}}, dict[str, Point]),
    ({"name": "s", "points": [{"x": "1"}]}, Shape),
    (7, Level),
    ({"data": 5}, Binary),
])
def test_a_value_that_does_not_fit_the_annotation_raises_serialization_error(value, annotation):
    with pytest.raises(SerializationError, match="does not fit"):
        revive(value, annotation)


def test_revive_is_public():
    assert serializers.revive is revive and "revive" in serializers.__all__


# -- through a ResultStore ------------------------------------------------------------


def test_a_result_store_with_the_json_serializer_round_trips_these_values(tmp_path):
    store = ResultStore(tmp_path, "json")
    values = {**TAGGED, "plain": PLAIN, "dataclass": Point(1, 2), "model": ITEM}
    for i, value in enumerate(values.values()):
        meta = store.write(f"value-{i}", value)
        assert meta.serializer == "json"
    reader = ResultStore(tmp_path)  # no serializer of its own: the record names it
    for i, (name, value) in enumerate(values.items()):
        expected = round_trip(value) if name in ("dataclass", "model") else value
        assert_same(store.read(f"value-{i}"), expected)
        assert_same(reader.read(f"value-{i}"), expected)
    with pytest.raises(SerializationError, match="Colour"):
        store.write("unsupported", Colour.RED)
    assert not store.exists("unsupported")
