"""The built-in serializers: pickle (the default), json and msgpack.

json writes plain JSON values as they are and a fixed table of other types as tagged
objects (`{"$bytes": "..."}`); reading maps each tag to its constructor and refuses any
other, so no name in a payload is ever imported or looked up. `revive` turns the dicts a
dataclass or pydantic model was written as back into it, given the annotation.

Why one long module: json's writer (`_tag`), reader (`_Codec`) and `revive` are one
format - the table of tags, which of them read back hashable, how a model is written and
so validated back - and the registry loads the built-ins from this one module.
"""

from __future__ import annotations

import collections.abc
import enum
import functools
import os
import pickle
import re
import sys
import types
import typing
from typing import IO, Any

from ..exceptions import SerializationError
from ..hookspecs import hookimpl
from . import Serializer


class PickleSerializer(Serializer):
    """Any picklable value; protocol 5, streamed to and from files."""

    type = "pickle"
    streaming = True

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL):
        self.protocol = protocol

    def dumps(self, obj: Any) -> bytes:
        try:
            return pickle.dumps(obj, protocol=self.protocol)
        except Exception as exc:
            raise SerializationError(f"cannot pickle {type(obj).__name__}: {exc}") from exc

    def loads(self, data: bytes | memoryview) -> Any:
        return pickle.loads(data)

    def dump(self, obj: Any, file: IO[bytes]) -> None:
        try:
            pickle.dump(obj, file, protocol=self.protocol)
        except OSError:
            raise  # the file failed (disk full...), not the value
        except Exception as exc:
            raise SerializationError(f"cannot pickle {type(obj).__name__}: {exc}") from exc

    def load(self, file: IO[bytes]) -> Any:
        return pickle.load(file)


class JSONSerializer(Serializer):
    """JSON, plus a fixed table of tagged types; dataclasses and pydantic models as their
    fields. The table and the rules: docs/concepts/serializers.md."""

    type = "json"

    def dumps(self, obj: Any) -> bytes:
        codec = _codec()
        try:
            text = None
            if _as_is(obj):
                try:
                    text = codec.encode(obj)
                except ValueError:  # a float that is not finite, an int past 4,300 digits:
                    text = None  # both are tags, written below
            if text is None:
                text = codec.encode(_tag(obj))
            try:
                return text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate (a surrogateescape'd file name)
                return _escape_surrogates(text)
        except _Unsupported as exc:
            raise SerializationError(
                f"the json serializer cannot encode {exc}; it writes JSON values, the tagged "
                "types (bytes, tuple, set, datetime, UUID, Decimal, Path, ...), dataclasses "
                "and pydantic models: use result_serializer='pickle' for other objects"
            ) from None
        except RecursionError:
            raise SerializationError(
                f"the json serializer cannot encode this {type(obj).__name__}: it is nested "
                "too deeply, or contains itself"
            ) from None
        except Exception as exc:  # a model's or a tzinfo's own error
            raise SerializationError(
                f"the json serializer cannot encode {type(obj).__name__}: {type(exc).__name__}: {exc}"
            ) from exc

    def loads(self, data: bytes | memoryview) -> Any:
        codec = _codec()
        try:
            text = str(data, "utf-8")
            # A tag is an object whose one key starts with "$" (perhaps written "\u0024").
            if ("$" in text and '"$' in text) or ("\\" in text and "\\u0024" in text):
                return codec.decode_tagged(text)
            return codec.decode_plain(text)
        except Exception as exc:  # RecursionError included: a deep document is refused
            raise SerializationError(
                f"not a payload of the json serializer: {type(exc).__name__}: {exc}"
            ) from exc


_SCALARS = frozenset({str, int, float, bool, type(None)})
# Python reads no int of more digits from decimal text (sys.set_int_max_str_digits): such
# an int is written as {"$int": "<hex>"}, which any Python reads.
_BIG = 10 ** sys.int_info.default_max_str_digits
# What a tag reads back as is hashable: these may be set elements and dict keys.
_HASHABLE_TAGS = frozenset({"$bytes", "$int", "$float", "$uuid", "$datetime", "$date", "$time",
                            "$timedelta", "$decimal", "$complex", "$posixpath", "$windowspath",
                            "$pureposixpath", "$purewindowspath"})


class _Unsupported(Exception):
    """A value the json serializer has no rule for (the message names it)."""


def _as_is(x: Any, _scalars: frozenset = _SCALARS) -> bool:
    """Whether the json module writes `x` exactly, given `_tag` as its hook for the types
    it does not know. What it would change silently is not: a tuple, a key that is not a
    str, a dict that looks like a tag, a subclass of dict or list. (A float that is not
    finite, or a huge int, makes the encoder raise ValueError: `dumps` then tags.)

    The fast path: this walk, then the encoder (which skips its own cycle check: a cycle is
    a RecursionError here) take 1.4 times what json.dumps takes (2,200 us for 1,000 rows of
    7 fields, 1,600 us); copying the value into its tagged form first takes 3.5 times.
    """
    t = type(x)
    if t is dict:
        for k, v in x.items():
            if type(k) is not str or (type(v) not in _scalars and not _as_is(v)):
                return False
        return not (len(x) == 1 and next(iter(x)).startswith("$"))
    if t is list:
        if _scalars.issuperset(map(type, x)):  # in C, and stops at the first other type
            return True
        for v in x:  # noqa: SIM110 - all() over a generator is 1.6 times slower
            if type(v) not in _scalars and not _as_is(v):
                return False
        return True
    return t in _scalars or not isinstance(x, (dict, list, tuple))


def _tag(x: Any) -> Any:
    """`x` as plain JSON values, other types written as tags."""
    t = type(x)
    if t is str or t is bool or x is None:
        return x
    if t is int:
        return x if -_BIG < x < _BIG else {"$int": format(x, "x")}
    if t is float:
        if x - x == 0:  # finite
            return x
        return {"$float": "nan" if x != x else "inf" if x > 0 else "-inf"}
    if t is list:
        return list(map(_tag, x))
    if t is dict:
        return _tag_dict(x)
    write = _codec().writers.get(t) or _writer_for(t)
    return write(x)


def _tag_dict(d: dict) -> dict:
    for k in d:
        if type(k) is not str:
            if all(isinstance(k, str) for k in d):  # str subclasses (StrEnum): as str
                d = {str.__str__(k): v for k, v in d.items()}
                break
            # Other keys: as [key, value] pairs.
            return {"$dict": [[_hashable(k), _tag(v)] for k, v in d.items()]}
    if len(d) == 1 and next(iter(d)).startswith("$"):  # a dict of yours that looks like a tag
        return {"$dict": [[k, _tag(v)] for k, v in d.items()]}
    return dict(zip(d, map(_tag, d.values()), strict=True))


def _items(x: set | frozenset) -> list:
    """A set's elements, tagged, in an order that does not depend on the hash seed."""
    kinds = set(map(type, x))
    if kinds == {str} or kinds == {int}:
        return list(map(_tag, sorted(x)))
    # Anything else by its JSON text: a total order (not so mixed types, frozensets
    # (`<` is "subset of"), NaN or Decimal("NaN")), the same in every process.
    return sorted(map(_hashable, x), key=_codec().encode)


def _hashable(x: Any) -> Any:
    """`x` tagged for a place (set element, dict key) where it must read back hashable."""
    out = _tag(x)
    if not _reads_hashable(out):
        raise _Unsupported(f"{_name(type(x))} as a set element or dict key (it would read "
                           "back as a dict or list, which cannot be one)")
    return out


def _reads_hashable(out: Any) -> bool:
    if type(out) is list:
        return False
    if type(out) is dict:
        if len(out) != 1:
            return False
        ((tag, value),) = out.items()
        if tag in ("$tuple", "$frozenset"):
            return all(map(_reads_hashable, value))
        return tag in _HASHABLE_TAGS
    return True


def _writer_for(t: type):
    """How to write a type outside the table: by its nearest base in the table (an IntEnum
    as its int, a namedtuple as a tuple), as its fields (a dataclass, a pydantic model)."""
    writers = _codec().writers
    for base in t.__mro__[1:]:
        if base in writers:
            return writers[base]
    if hasattr(t, "__dataclass_fields__"):
        return _dataclass_fields
    if _is_model(t):
        # By alias and round_trip: what model_validate_json reads back (see revive).
        return lambda model: _tag(model.model_dump(mode="json", by_alias=True, round_trip=True))
    raise _Unsupported(_name(t))


def _dataclass_fields(x: Any) -> dict:
    return _tag_dict({f.name: getattr(x, f.name) for f in _codec().fields(x)})


def _is_model(t: type) -> bool:
    """A pydantic (v2) model class, by what it can do."""
    return callable(getattr(t, "model_dump", None)) and callable(getattr(t, "model_validate", None))


def _name(t: type) -> str:
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _escape_surrogates(text: str) -> bytes:
    """`text` as UTF-8 with its lone surrogates written as JSON escapes (\\udcxx), which
    read back as the same lone surrogates. Two that make a pair would read back as the one
    character they encode, so they are refused."""
    if re.search("[\ud800-\udbff][\udc00-\udfff]", text):
        raise _Unsupported("a str holding a surrogate pair as two code points")
    return text.encode("utf-8", "backslashreplace")


class _Codec:
    """The json module's encoder and decoders and the tag tables, made on first use:
    json, datetime, uuid, decimal and base64 take ~8 ms to import."""

    def __init__(self):
        import base64
        import binascii
        import dataclasses
        import datetime as dt
        import decimal
        import json
        import pathlib
        import uuid

        # check_circular=False: what reaches it passed _as_is or was built by _tag, both
        # of which meet a cycle as a RecursionError first; so does _tag as the hook.
        # allow_nan=False: a float that is not finite is a tag.
        self.encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                                       check_circular=False, allow_nan=False, default=_tag).encode
        # No hook: JSON values only (revive's text for pydantic).
        self.encode_plain = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        self.decode_plain = json.JSONDecoder().decode
        self.decode_tagged = json.JSONDecoder(object_hook=self._object).decode
        self.fields = dataclasses.fields

        def b64(x: bytes | bytearray) -> str:
            return binascii.b2a_base64(x, newline=False).decode("ascii")

        def folded(text: str, x: dt.datetime | dt.time) -> str | list:
            return [text, 1] if x.fold else text  # isoformat() does not write the fold

        def unfolded(parse):
            def read(v: Any) -> Any:
                if type(v) is list and len(v) == 2 and type(v[0]) is str and v[1] == 1 \
                        and type(v[1]) is int:
                    return parse(v[0]).replace(fold=1)
                return parse(_expect(v, str))
            return read

        def path(x: pathlib.PurePath) -> dict:  # a subclass of Path or PurePath (3.12+)
            windows = isinstance(x, pathlib.PureWindowsPath) or (
                not isinstance(x, pathlib.PurePosixPath) and os.name == "nt")
            kind = "windowspath" if windows else "posixpath"
            tag = f"${kind}" if isinstance(x, pathlib.Path) else f"$pure{kind}"
            return {tag: pathlib.PurePath.__str__(x)}

        Path = pathlib.PurePath
        self.writers = {
            # Subclasses of str, int and float (IntEnum, StrEnum) as the base type.
            str: str.__str__, int: lambda x: _tag(int.__int__(x)),
            float: lambda x: _tag(float.__float__(x)),
            list: lambda x: list(map(_tag, x)), dict: _tag_dict,
            tuple: lambda x: {"$tuple": list(map(_tag, x))},
            set: lambda x: {"$set": _items(x)},
            frozenset: lambda x: {"$frozenset": _items(x)},
            bytes: lambda x: {"$bytes": b64(x)},
            bytearray: lambda x: {"$bytearray": b64(x)},
            complex: lambda x: {"$complex": [_tag(x.real), _tag(x.imag)]},
            uuid.UUID: lambda x: {"$uuid": uuid.UUID.__str__(x)},
            dt.datetime: lambda x: {"$datetime": folded(dt.datetime.isoformat(x), x)},
            dt.date: lambda x: {"$date": dt.date.isoformat(x)},
            dt.time: lambda x: {"$time": folded(dt.time.isoformat(x), x)},
            dt.timedelta: lambda x: {"$timedelta": [x.days, x.seconds, x.microseconds]},
            decimal.Decimal: lambda x: {"$decimal": decimal.Decimal.__str__(x)},
            pathlib.PosixPath: lambda x: {"$posixpath": Path.__str__(x)},
            pathlib.WindowsPath: lambda x: {"$windowspath": Path.__str__(x)},
            pathlib.PurePosixPath: lambda x: {"$pureposixpath": Path.__str__(x)},
            pathlib.PureWindowsPath: lambda x: {"$purewindowspath": Path.__str__(x)},
            pathlib.PurePath: path,
        }
        floats = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
        self.readers = {
            "$dict": _read_pairs,
            "$tuple": lambda v: tuple(_expect(v, list)),
            "$set": lambda v: set(_expect(v, list)),
            "$frozenset": lambda v: frozenset(_expect(v, list)),
            "$bytes": lambda v: base64.b64decode(_expect(v, str), validate=True),
            "$bytearray": lambda v: bytearray(base64.b64decode(_expect(v, str), validate=True)),
            "$int": _read_int,
            "$float": lambda v: floats[_expect(v, str)],
            "$complex": lambda v: complex(*_numbers(v, 2, (int, float))),
            "$uuid": lambda v: uuid.UUID(_expect(v, str)),
            "$datetime": unfolded(dt.datetime.fromisoformat),
            "$date": lambda v: dt.date.fromisoformat(_expect(v, str)),
            "$time": unfolded(dt.time.fromisoformat),
            "$timedelta": lambda v: dt.timedelta(*_numbers(v, 3, (int,))),
            "$decimal": lambda v: decimal.Decimal(_expect(v, str)),
            "$posixpath": lambda v: pathlib.PosixPath(_expect(v, str)),
            "$windowspath": lambda v: pathlib.WindowsPath(_expect(v, str)),
            "$pureposixpath": lambda v: pathlib.PurePosixPath(_expect(v, str)),
            "$purewindowspath": lambda v: pathlib.PureWindowsPath(_expect(v, str)),
        }

    def _object(self, d: dict) -> Any:
        if len(d) == 1:
            ((key, value),) = d.items()
            if key.startswith("$"):
                read = self.readers.get(key)
                # Not a tag of the table: a plain dict, as the json serializer before
                # tags wrote it ({"$ref": ...} in a stored JSON schema): kept as data.
                return d if read is None else read(value)
        return d


@functools.cache
def _codec() -> _Codec:
    return _Codec()


def _expect(value: Any, kind: type) -> Any:
    if type(value) is not kind:
        raise ValueError(f"a tag holds {type(value).__name__} where {kind.__name__} belongs")
    return value


def _numbers(value: Any, count: int, kinds: tuple[type, ...]) -> list:
    if type(value) is not list or len(value) != count or not all(type(v) in kinds for v in value):
        raise ValueError(f"a tag holds {value!r} where {count} numbers belong")
    return value


def _read_int(value: Any) -> int:
    if not re.fullmatch("-?[0-9a-f]+", _expect(value, str)):
        raise ValueError(f"a $int holds {value[:40]!r}, not hexadecimal digits")
    return int(value, 16)


def _read_pairs(value: Any) -> dict:
    out = {}
    for pair in _expect(value, list):
        if type(pair) is not list or len(pair) != 2:
            raise ValueError(f"a $dict item is {pair!r}, not a [key, value] pair")
        out[pair[0]] = pair[1]
    return out


def revive(value: Any, annotation: Any) -> Any:
    """`value`, as a serializer read it back, as the type `annotation` names.

    A dict becomes the dataclass or pydantic model the annotation names, and a value the
    Enum it names (an IntEnum is written as its int), also inside `list[...]`,
    `tuple[...]`, `set[...]`, `dict[..., ...]`, `X | None`, `X | Y`, `Annotated[...]` and
    in a dataclass's annotated fields. Anything else comes back as it is, so it can be
    called on every value read. A value that does not fit raises SerializationError.
    """
    if value is None or not _names_a_class_to_revive(annotation):
        return value
    origin = typing.get_origin(annotation)
    if origin is None:
        if isinstance(annotation, typing.NewType):
            return revive(value, annotation.__supertype__)
        if isinstance(annotation, _TypeAliasType):
            return revive(value, annotation.__value__)
        return _revive_class(value, annotation) if isinstance(annotation, type) else value
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return revive(value, args[0])
    if origin is typing.Union or origin is types.UnionType:
        return _revive_union(value, args)
    try:
        if origin is tuple and type(value) in (tuple, list):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(revive(v, args[0]) for v in value)
            if len(args) == len(value):
                return tuple(map(revive, value, args))
            return value
        if origin in _SEQUENCES and type(value) in (list, tuple, set, frozenset):
            return type(value)(revive(v, args[0]) for v in value)
        if origin in _MAPPINGS and type(value) is dict and len(args) == 2:
            return {revive(k, args[0]): revive(v, args[1]) for k, v in value.items()}
    except TypeError as exc:  # what was revived is not hashable, and is a set element or key
        raise SerializationError(f"the value read back does not fit {annotation}: {exc}") from exc
    if isinstance(origin, type):  # a generic dataclass, DataClass[int]
        return _revive_class(value, origin)
    return value


_SEQUENCES = frozenset({list, set, frozenset, collections.abc.Sequence,
                        collections.abc.MutableSequence, collections.abc.Set,
                        collections.abc.MutableSet, collections.abc.Collection,
                        collections.abc.Iterable})
_MAPPINGS = frozenset({dict, collections.abc.Mapping, collections.abc.MutableMapping})
_TypeAliasType = getattr(typing, "TypeAliasType", ())  # `type X = ...`, Python 3.12+


def _revivable(cls: Any) -> bool:
    return isinstance(cls, type) and (issubclass(cls, enum.Enum) or _is_model(cls)
                                      or hasattr(cls, "__dataclass_fields__"))


def _names_a_class_to_revive(annotation: Any) -> bool:
    """Whether `annotation` names a dataclass, model or Enum anywhere: if not, the value
    is left as it is, unwalked (a list[int] of a million ints costs nothing)."""
    try:
        return _names_revivable(annotation)
    except TypeError:  # an annotation that cannot be a cache key: walk it, uncached
        return _walk_annotation(annotation, set())


@functools.lru_cache(maxsize=1024)
def _names_revivable(annotation: Any) -> bool:
    return _walk_annotation(annotation, set())


def _walk_annotation(annotation: Any, seen: set[int]) -> bool:
    if annotation is None or isinstance(annotation, str) or id(annotation) in seen:
        return False
    seen.add(id(annotation))  # a recursive type alias is walked once
    if _revivable(annotation):
        return True
    if isinstance(annotation, typing.NewType):
        return _walk_annotation(annotation.__supertype__, seen)
    if isinstance(annotation, _TypeAliasType):
        return _walk_annotation(annotation.__value__, seen)
    origin = typing.get_origin(annotation)
    if origin is None:
        return False
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        args = args[:1]
    return _revivable(origin) or any(_walk_annotation(a, seen) for a in args)


def _revive_union(value: Any, args: tuple) -> Any:
    options = [a for a in args if a is not type(None)]
    if len(options) == 1:
        return revive(value, options[0])
    for option in options:  # the value already is one of the other types: as it is
        cls = typing.get_origin(option) or option
        try:
            if not _revivable(cls) and isinstance(value, cls):
                return revive(value, option)
        except TypeError:  # Any, a Literal, a Protocol: isinstance does not apply
            continue
    for option in options:  # else the first dataclass, model or Enum it fits
        try:
            out = revive(value, option)
        except SerializationError:
            continue
        if out is not value:
            return out
    return value


def _revive_class(value: Any, cls: type) -> Any:
    if not _revivable(cls) or isinstance(value, cls):
        return value
    try:
        if issubclass(cls, enum.Enum):
            return cls(value)
        if _is_model(cls):
            return _validate_model(cls, value)
        if type(value) is not dict:
            raise TypeError(f"{_name(cls)} is read back from a dict of its fields, not from "
                            f"{type(value).__name__}")
        return _build_dataclass(cls, value)
    except SerializationError:
        raise
    except Exception as exc:  # pydantic's ValidationError is a ValueError
        raise SerializationError(f"the value read back does not fit {_name(cls)}: {exc}") from exc


def _validate_model(cls: type, value: Any) -> Any:
    # model_dump(mode="json", by_alias=True, round_trip=True) wrote it: its inverse is
    # validating that JSON (strict models, base64 bytes, aliases, Json fields). A value
    # that holds other objects is validated as Python.
    try:
        text = _codec().encode_plain(value)
    except (TypeError, ValueError, RecursionError):
        return cls.model_validate(value)
    return cls.model_validate_json(text)


def _build_dataclass(cls: type, value: dict) -> Any:
    fields = _codec().fields(cls)
    unknown = value.keys() - {f.name for f in fields}
    if unknown:
        raise TypeError(f"it has no field {', '.join(sorted(map(repr, unknown)))}")
    hints = _field_types(cls)
    out = cls(**{f.name: revive(value[f.name], hints.get(f.name))
                 for f in fields if f.init and f.name in value})
    for f in fields:  # init=False fields: as written (pickle does the same)
        if not f.init and f.name in value:
            object.__setattr__(out, f.name, revive(value[f.name], hints.get(f.name)))
    return out


@functools.lru_cache(maxsize=256)
def _field_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: those fields are left as read
        return {f.name: f.type for f in _codec().fields(cls) if not isinstance(f.type, str)}


class MsgpackSerializer(Serializer):
    """msgpack values: like JSON plus bytes and non-str keys (tuples come back as lists)."""

    type = "msgpack"

    def dumps(self, obj: Any) -> bytes:
        import msgpack

        try:
            return msgpack.packb(obj, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(
                f"the msgpack serializer cannot encode {type(obj).__name__}: {exc}"
            ) from exc

    def loads(self, data: bytes | memoryview) -> Any:
        import msgpack

        return msgpack.unpackb(data, raw=False, strict_map_key=False)


@hookimpl
def register_serializers(register):
    register(PickleSerializer)
    register(JSONSerializer)
    register(MsgpackSerializer)
