"""Canonical input hashing: the bytes a cache key is computed from (scheme version 2).

(Why one long module: it is one versioned encoding scheme, the tag table below
and an encoder per tag. Changing any encoder changes keys, so the whole scheme
is read, reviewed and versioned in one place.)

Two values get the same encoding only if they are of the same type and equal
(or both NaN of one type). The encoding depends only on the value: never on
`id()`, `hash()`, PYTHONHASHSEED or the order a set or dict was built in.
It is the scheme version byte (2; version 1 had no version byte) followed by
the value's encoding; digests are BLAKE2b with 16-byte output, in hex.

Every value starts with a one-byte tag; lengths are one byte (below 255) or
0xFF and eight little-endian bytes; names (`module.qualname`) and text are
UTF-8 with a length. Containers encode their members recursively.

===  =======================================================================
tag  value
===  =======================================================================
N    None
T F  True, False
i    int: signed little-endian bytes
f    float: IEEE 754 bits (-0.0 is not 0.0); every NaN has one encoding
c    complex: two floats
s    str          b bytes        B bytearray    m memoryview (+ format, shape)
t    tuple        l list         r range (start, stop, step)
S    set          Z frozenset    (members sorted by their encoding)
d    dict (pairs sorted)         o OrderedDict (in order)
q    defaultdict (default_factory, then the pairs)
e    Ellipsis
E    Enum member: class name, member name (before int and str: IntEnum)
C    a class: its name
L    a function: its name, `code_digest` of its code, its closure values and defaults
@    a code object (inside `code_digest`): bytecode, names, constants, nested code
W    datetime: fields, fold, tzinfo      Y date      H time: fields, fold, tzinfo
J    timedelta    z timezone: offset and name    k ZoneInfo: key
x    Decimal: str (keeps -0, NaN vs sNaN, exponent)    Q Fraction    U UUID
p    PurePath and subclasses: class name, str
K    dataclass: class name, every field     M NamedTuple: class name, items
P    pydantic model: class name, `model_dump()`
<    subclass of one of the types above: class name, base encoding, attributes
A    numpy array: str(dtype), dtype.str, shape, C-order bytes
a    numpy array of objects: dtypes, shape, elements
y    numpy MaskedArray: class name, data, mask     v numpy scalar    V numpy dtype
X    pandas DataFrame: class name, columns, index, each column's values
j    pandas Series: class name, name, index, values
I    pandas Index: class name, names, values         h pandas Categorical
R    pandas Timestamp: datetime64, tzinfo, fold      D pandas Timedelta
n    pandas NaT       u pandas NA
O    any other object: its `__reduce_ex__(4)`: the callable's name (never
     called), arguments, state, list items, dict items
g    a callable named in a reduce value     G an object reduced to a global name
===  =======================================================================

Types are named by `module.qualname`, so two classes of the same name in one
module (redefined in a notebook, say) are not told apart. numpy, pandas and
pydantic are recognised by class, never imported here. A value that contains
itself, or whose reduce fails (locks, files, generators, sockets, modules),
raises CacheKeyError naming where it is.
"""

from __future__ import annotations

import collections
import enum
import hashlib
import struct
import sys
import types
from collections.abc import Callable
from typing import Any

from .exceptions import CacheKeyError

VERSION = 2
_HEADER = bytes((VERSION,))
_DIGEST_SIZE = 16  # 32 hex characters: a short, collision-safe file name

Encoder = Callable[[bytearray, Any, set], None]


class _Unhashable(Exception):
    """Raised inside the encoder; `path` collects where, innermost segment first."""

    def __init__(self, reason: str):
        self.reason = reason
        self.path: list[str] = []

    def where(self, root: str) -> str:
        return root + "".join(reversed(self.path))


# -- scalars ---------------------------------------------------------------------------

_LEN = [bytes((n,)) for n in range(255)]
_pack_d = struct.Struct("<d").pack
_NAN = _pack_d(float("nan"))


def _len(n: int) -> bytes:
    return _LEN[n] if n < 255 else b"\xff" + n.to_bytes(8, "little")


def _text(s: str) -> bytes:
    data = s.encode("utf-8", "surrogatepass")
    return _len(len(data)) + data


def _none(out: bytearray, x: None, seen: set) -> None:
    out += b"N"


def _bool(out: bytearray, x: bool, seen: set) -> None:
    out += b"T" if x else b"F"


def _int(out: bytearray, x: int, seen: set) -> None:
    data = x.to_bytes((x.bit_length() + 8) // 8, "little", signed=True)
    out += b"i" + _len(len(data)) + data


def _float_bits(x: float) -> bytes:
    return _NAN if x != x else _pack_d(x)


def _float(out: bytearray, x: float, seen: set) -> None:
    out += b"f" + (_NAN if x != x else _pack_d(x))


def _complex(out: bytearray, x: complex, seen: set) -> None:
    out += b"c" + _float_bits(x.real) + _float_bits(x.imag)


def _str(out: bytearray, x: str, seen: set) -> None:
    data = x.encode("utf-8", "surrogatepass")
    out += b"s" + _len(len(data)) + data


def _bytes(out: bytearray, x: bytes, seen: set) -> None:
    out += b"b" + _len(len(x)) + x


def _bytearray(out: bytearray, x: bytearray, seen: set) -> None:
    out += b"B" + _len(len(x)) + x


def _memoryview(out: bytearray, x: memoryview, seen: set) -> None:
    try:
        data, fmt, shape = x.tobytes(), x.format, x.shape
    except ValueError as exc:  # a released view
        raise _Unhashable(f"memoryview cannot be read ({exc})") from None
    out += b"m" + _text(fmt)
    _tuple(out, shape, seen)
    out += _len(len(data)) + data


def _ellipsis(out: bytearray, x: Any, seen: set) -> None:
    out += b"e"


def _range(out: bytearray, x: range, seen: set) -> None:
    out += b"r"
    _int(out, x.start, seen)
    _int(out, x.stop, seen)
    _int(out, x.step, seen)


# -- containers -------------------------------------------------------------------------


def _enter(x: Any, seen: set) -> int:
    key = id(x)
    if key in seen:
        raise _Unhashable("it contains itself")
    seen.add(key)
    return key


def _items(tag: bytes) -> Encoder:
    def encode(out: bytearray, x: Any, seen: set) -> None:
        key = _enter(x, seen)
        out += tag + _len(len(x))
        i = 0
        try:
            for i, item in enumerate(x):  # noqa: B007 - i names the failing item
                (_ENCODERS.get(type(item)) or _resolve(type(item)))(out, item, seen)
        except _Unhashable as exc:
            exc.path.append(f"[{i}]")
            raise
        seen.discard(key)
    return encode


_tuple = _items(b"t")
_list = _items(b"l")


def _encoded(x: Any, seen: set) -> bytes:
    buf = bytearray()
    (_ENCODERS.get(type(x)) or _resolve(type(x)))(buf, x, seen)
    return bytes(buf)


def _members(tag: bytes) -> Encoder:
    def encode(out: bytearray, x: Any, seen: set) -> None:
        key = _enter(x, seen)
        out += tag + _len(len(x))
        if all(type(m) is str for m in x) or all(type(m) is int for m in x):
            for m in sorted(x):
                (_str if type(m) is str else _int)(out, m, seen)
        else:
            try:
                encoded = sorted(_encoded(m, seen) for m in x)
            except _Unhashable as exc:
                exc.path.append("{...}")
                raise
            for m in encoded:
                out += m
        seen.discard(key)
    return encode


def _pairs(out: bytearray, x: dict, seen: set) -> None:
    """A dict's entries, in an order that depends only on their values."""
    out += _len(len(x))
    if all(type(k) is str for k in x) or all(type(k) is int for k in x):
        for k, v in sorted(x.items()):
            (_str if type(k) is str else _int)(out, k, seen)
            try:
                (_ENCODERS.get(type(v)) or _resolve(type(v)))(out, v, seen)
            except _Unhashable as exc:
                exc.path.append(f"[{_short(k)}]")
                raise
        return
    pairs = []
    for k, v in x.items():
        try:
            ek = _encoded(k, seen)
        except _Unhashable as exc:
            exc.path.append(".keys()")
            raise
        try:
            pairs.append((ek, _encoded(v, seen)))
        except _Unhashable as exc:
            exc.path.append(f"[{_short(k)}]")
            raise
    for ek, ev in sorted(pairs):
        out += ek + ev


def _ordered_pairs(out: bytearray, x: dict, seen: set) -> None:
    out += _len(len(x))
    for k, v in x.items():
        try:
            _encode(out, k, seen)
        except _Unhashable as exc:
            exc.path.append(".keys()")
            raise
        try:
            _encode(out, v, seen)
        except _Unhashable as exc:
            exc.path.append(f"[{_short(k)}]")
            raise


def _short(k: Any) -> str:
    text = repr(k)
    return text if len(text) <= 40 else text[:37] + "..."


def _dict(out: bytearray, x: dict, seen: set) -> None:
    key = _enter(x, seen)
    out += b"d"
    _pairs(out, x, seen)
    seen.discard(key)


def _ordered_dict(out: bytearray, x: collections.OrderedDict, seen: set) -> None:
    key = _enter(x, seen)
    out += b"o"
    _ordered_pairs(out, x, seen)  # its == is order-sensitive
    seen.discard(key)


def _defaultdict(out: bytearray, x: collections.defaultdict, seen: set) -> None:
    key = _enter(x, seen)
    out += b"q"
    try:
        _encode(out, x.default_factory, seen)
    except _Unhashable as exc:
        exc.path.append(".default_factory")
        raise
    _pairs(out, x, seen)
    seen.discard(key)


def _attrs(out: bytearray, names: Any, x: Any, seen: set) -> None:
    """Named attributes `names` of `x` (in the given order), each failure named `.attr`."""
    for name in names:
        out += _text(name)
        value = getattr(x, name)
        try:
            (_ENCODERS.get(type(value)) or _resolve(type(value)))(out, value, seen)
        except _Unhashable as exc:
            exc.path.append(f".{name}")
            raise


def _state(out: bytearray, state: Any, seen: set) -> None:
    """An object's state: a str-keyed dict reads as attributes (`.name`) in error paths."""
    if type(state) is dict and all(type(k) is str for k in state):
        out += b"d" + _len(len(state))
        for k in sorted(state):
            _str(out, k, seen)
            try:
                _encode(out, state[k], seen)
            except _Unhashable as exc:
                exc.path.append(f".{k}")
                raise
    else:
        _encode(out, state, seen)


# -- names, classes, functions, enums -----------------------------------------------------

_NAMES: dict[Any, bytes] = {}


def _qualname(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
    return f"{module}.{name}" if isinstance(module, str) else str(name)


def _name(obj: Any) -> bytes:
    """`module.qualname` of a class or function, as encoded text (cached for classes)."""
    found = _NAMES.get(obj) if isinstance(obj, type) else None
    if found is None:
        found = _text(_qualname(obj))
        if isinstance(obj, type):
            if len(_NAMES) > 4096:
                _NAMES.clear()
            _NAMES[obj] = found
    return found


def _type(out: bytearray, x: type, seen: set) -> None:
    out += b"C" + _name(x)


def _function(out: bytearray, x: types.FunctionType, seen: set) -> None:
    # Its name, its own code, and the values it closes over and defaults to. The helpers
    # it calls are TASK_SOURCE's business (stashflow.fingerprint), not an input's.
    out += b"L" + _name(x) + code_digest(x.__code__)
    for value in (*(_cell_value(c) for c in x.__closure__ or ()), *(x.__defaults__ or ()),
                  *sorted((x.__kwdefaults__ or {}).items())):
        try:
            sub = bytearray()
            _encode(sub, value, seen)
            out += sub
        except _Unhashable:  # a client, a lock...: only what it is counts
            out += b"?" + _name(type(value))


def _cell_value(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell (a name assigned later in the enclosing function)
        return _EMPTY_CELL


class _EmptyCell:
    pass


_EMPTY_CELL = _EmptyCell()


# -- code objects ---------------------------------------------------------------------------

_PYTHON = f"{sys.implementation.name}-{sys.version_info[0]}.{sys.version_info[1]}"
# Where a function was defined (CO_NESTED) and `from __future__` flags (above 0xFFFF:
# their effects are in the bytecode and constants already) do not change what it runs.
_CODE_FLAGS = 0xFFFF & ~0x10
_code_counts = struct.Struct("<IIII").pack
_CODE_DIGESTS: dict[types.CodeType, bytes] = {}


def code_digest(code: types.CodeType) -> bytes:
    """16 bytes identifying what a code object runs: its bytecode, names, constants and
    nested code, for this Python's bytecode (`sys.version_info[:2]`). Not its source
    text, line numbers or file: comments and blank lines do not change it."""
    found = _CODE_DIGESTS.get(code)
    if found is None:
        out = bytearray(_PYTHON.encode())
        _code_object(out, code)
        found = hashlib.blake2b(out, digest_size=_DIGEST_SIZE).digest()
        if len(_CODE_DIGESTS) > 4096:
            _CODE_DIGESTS.clear()
        _CODE_DIGESTS[code] = found
    return found


def _code_object(out: bytearray, code: types.CodeType) -> None:
    out += b"@" + _text(code.co_name) + _code_counts(
        code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount,
        code.co_flags & _CODE_FLAGS)
    for data in (code.co_code, code.co_exceptiontable):
        out += _len(len(data)) + data
    for group in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
        out += _len(len(group)) + b"".join(_text(n) for n in group)
    out += _len(len(code.co_consts))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_object(out, const)
        else:
            _encode(out, const, set())


def _enum(out: bytearray, x: enum.Enum, seen: set) -> None:
    out += b"E" + _name(type(x))
    name = x._name_
    if name is None:  # a Flag combination without a name: by its value
        out += b"="
        _encode(out, x._value_, seen)
    else:
        _str(out, name, seen)


# -- the standard library's value types ------------------------------------------------------

_dt_fields = struct.Struct("<HBBBBBIB").pack
_time_fields = struct.Struct("<BBBIB").pack
_date_fields = struct.Struct("<HBB").pack
_td_fields = struct.Struct("<iII").pack


def _datetime(out: bytearray, x: Any, seen: set) -> None:
    out += b"W" + _dt_fields(x.year, x.month, x.day, x.hour, x.minute, x.second,
                             x.microsecond, x.fold)
    _encode(out, x.tzinfo, seen)  # naive (None) and aware are kept apart


def _date(out: bytearray, x: Any, seen: set) -> None:
    out += b"Y" + _date_fields(x.year, x.month, x.day)


def _time(out: bytearray, x: Any, seen: set) -> None:
    out += b"H" + _time_fields(x.hour, x.minute, x.second, x.microsecond, x.fold)
    _encode(out, x.tzinfo, seen)


def _timedelta(out: bytearray, x: Any, seen: set) -> None:
    out += b"J" + _td_fields(x.days, x.seconds, x.microseconds)


def _timezone(out: bytearray, x: Any, seen: set) -> None:
    out += b"z"
    _tuple(out, x.__getinitargs__(), seen)  # (offset,) or (offset, name)


def _zoneinfo(out: bytearray, x: Any, seen: set) -> None:
    if x.key is None:
        raise _Unhashable("a ZoneInfo made from a file has no key to identify it")
    out += b"k"
    _str(out, x.key, seen)


def _decimal(out: bytearray, x: Any, seen: set) -> None:
    out += b"x" + _text(str(x))


def _fraction(out: bytearray, x: Any, seen: set) -> None:
    out += b"Q"
    _int(out, x.numerator, seen)
    _int(out, x.denominator, seen)


def _uuid(out: bytearray, x: Any, seen: set) -> None:
    out += b"U" + x.bytes


def _path(out: bytearray, x: Any, seen: set) -> None:
    out += b"p" + _name(type(x)) + _text(str(x))
    attrs = getattr(x, "__dict__", None)  # a user subclass's own attributes
    if attrs:
        _state(out, attrs, seen)
    else:
        out += b"N"


_BUILTINS: dict[type, Encoder] = {
    type(None): _none, bool: _bool, int: _int, float: _float, complex: _complex,
    str: _str, bytes: _bytes, bytearray: _bytearray, memoryview: _memoryview,
    tuple: _tuple, list: _list, set: _members(b"S"), frozenset: _members(b"Z"),
    dict: _dict, collections.OrderedDict: _ordered_dict, collections.defaultdict: _defaultdict,
    range: _range, type(...): _ellipsis, type: _type, types.FunctionType: _function,
}

# type -> encoder; starts with the built-ins and learns every other type it meets.
_ENCODERS: dict[type, Encoder] = dict(_BUILTINS)


def _value_bases() -> dict[type, Encoder]:
    """The built-in and standard-library value types whose modules are loaded."""
    bases = dict(_BUILTINS)
    del bases[type], bases[types.FunctionType]
    modules = sys.modules
    if "datetime" in modules:
        dt = modules["datetime"]
        bases.update({dt.datetime: _datetime, dt.date: _date, dt.time: _time,
                      dt.timedelta: _timedelta, dt.timezone: _timezone})
    if "zoneinfo" in modules:
        bases[modules["zoneinfo"].ZoneInfo] = _zoneinfo
    if "decimal" in modules:
        bases[modules["decimal"].Decimal] = _decimal
    if "fractions" in modules:
        bases[modules["fractions"].Fraction] = _fraction
    if "uuid" in modules:
        bases[modules["uuid"].UUID] = _uuid
    if "pathlib" in modules:
        bases[modules["pathlib"].PurePath] = _path
    return bases


def _subclass(cls: type, base: type, encode: Encoder) -> Encoder:
    """A subclass of a value type: its name, the base encoding, then its own attributes."""
    name = _name(cls)
    slots = [slot for c in cls.__mro__[:cls.__mro__.index(base)] for slot in _slots(c)]

    def encoder(out: bytearray, x: Any, seen: set) -> None:
        out += b"<" + name
        encode(out, x, seen)
        state = dict(getattr(x, "__dict__", None) or {})
        for slot in slots:
            value = getattr(x, slot, _MISSING)
            if value is not _MISSING:
                state[slot] = value
        key = _enter(x, seen)
        _state(out, state, seen)
        seen.discard(key)
    return encoder


_MISSING: Any = object()


def _slots(cls: type) -> list[str]:
    """The attribute names of the slots `cls` itself declares (private names mangled)."""
    declared = cls.__dict__.get("__slots__", ())
    if isinstance(declared, str):
        declared = (declared,)
    return [f"_{cls.__name__.lstrip('_')}{s}" if s.startswith("__") and not s.endswith("__") else s
            for s in declared if s not in ("__dict__", "__weakref__")]


# -- dataclasses, named tuples, pydantic -------------------------------------------------------


def _dataclass(cls: type) -> Encoder:
    fields = [f.name for f in sys.modules["dataclasses"].fields(cls)]
    name = _name(cls)
    count = _len(len(fields))

    def encoder(out: bytearray, x: Any, seen: set) -> None:
        key = _enter(x, seen)
        out += b"K" + name + count
        _attrs(out, fields, x, seen)
        seen.discard(key)
    return encoder


def _namedtuple(cls: type) -> Encoder:
    name = _name(cls)
    fields = cls._fields

    def encoder(out: bytearray, x: Any, seen: set) -> None:
        key = _enter(x, seen)
        out += b"M" + name + _len(len(x))
        for i, item in enumerate(x):
            try:
                _encode(out, item, seen)
            except _Unhashable as exc:
                exc.path.append(f".{fields[i]}" if i < len(fields) else f"[{i}]")
                raise
        seen.discard(key)
    return encoder


def _pydantic(cls: type) -> Encoder:
    name = _name(cls)

    def encoder(out: bytearray, x: Any, seen: set) -> None:
        key = _enter(x, seen)
        try:
            dumped = x.model_dump()  # honours a custom model_serializer
        except Exception as exc:
            raise _Unhashable(f"{_qualname(cls)}.model_dump() failed ({exc})") from None
        out += b"P" + name
        _state(out, dumped, seen)
        seen.discard(key)
    return encoder


# -- numpy and pandas, by class name: never imported here ---------------------------------------


def _dtype_text(dtype: Any) -> bytes:
    return _text(str(dtype)) + _text(dtype.str)  # str() tells structured dtypes apart


def _ndarray(out: bytearray, x: Any, seen: set) -> None:
    dtype = x.dtype
    if dtype.hasobject:
        key = _enter(x, seen)
        out += b"a" + _dtype_text(dtype)
        _tuple(out, x.shape, seen)
        _encode(out, x.tolist(), seen)
        seen.discard(key)
        return
    data = x.tobytes(order="C")
    out += b"A" + _dtype_text(dtype)
    _tuple(out, x.shape, seen)
    out += _len(len(data)) + data


def _ndarray_subclass(cls: type, base: type) -> Encoder:
    name = _name(cls)

    def encoder(out: bytearray, x: Any, seen: set) -> None:
        out += b"<" + name
        _ndarray(out, x.view(base), seen)
    return encoder


def _masked_array(cls: type) -> Encoder:
    name = _name(cls)

    def encoder(out: bytearray, x: Any, seen: set) -> None:
        out += b"y" + name
        _ndarray(out, x.data, seen)
        _encode(out, x.mask, seen)
    return encoder


def _numpy_scalar(cls: type) -> Encoder:
    name = _name(cls)

    def encoder(out: bytearray, x: Any, seen: set) -> None:
        dtype = x.dtype
        out += b"v" + name + _dtype_text(dtype)
        if dtype.kind in "fc" and x != x:  # every NaN of one type is the same input
            if dtype.kind == "f":
                out += b"n"
            else:
                out += b"c"
                _encode(out, x.real, seen)
                _encode(out, x.imag, seen)
        elif dtype.hasobject:
            _encode(out, x.item(), seen)
        else:
            data = x.tobytes()
            out += b"=" + _len(len(data)) + data
    return encoder


def _numpy_dtype(out: bytearray, x: Any, seen: set) -> None:
    out += b"V" + _dtype_text(x)


def _pandas_values(out: bytearray, x: Any, seen: set) -> None:
    """A Series' or an Index's values: numpy bytes when they are plain numpy, else one by one."""
    dtype = x.dtype
    out += _text(str(dtype))
    if type(dtype).__module__.partition(".")[0] == "numpy" and not dtype.hasobject:
        _ndarray(out, x.to_numpy(), seen)
    elif type(x.array).__name__ == "Categorical":
        _categorical(out, x.array, seen)
    else:
        _list(out, x.tolist(), seen)


def _pandas_index(out: bytearray, x: Any, seen: set) -> None:
    out += b"I" + _name(type(x))
    _list(out, list(x.names), seen)
    if type(x).__name__ == "RangeIndex":
        _range(out, range(x.start, x.stop, x.step), seen)
    else:
        _pandas_values(out, x, seen)


def _pandas_series(out: bytearray, x: Any, seen: set) -> None:
    key = _enter(x, seen)
    out += b"j" + _name(type(x))
    try:
        _encode(out, x.name, seen)
    except _Unhashable as exc:
        exc.path.append(".name")
        raise
    _pandas_index(out, x.index, seen)
    try:
        _pandas_values(out, x, seen)
    except _Unhashable as exc:
        exc.path.append(".values")
        raise
    seen.discard(key)


def _pandas_frame(out: bytearray, x: Any, seen: set) -> None:
    key = _enter(x, seen)
    out += b"X" + _name(type(x))
    _pandas_index(out, x.columns, seen)
    _pandas_index(out, x.index, seen)
    out += _len(x.shape[1])
    for i, (label, column) in enumerate(x.items()):
        try:
            _pandas_values(out, column, seen)
        except _Unhashable as exc:
            exc.path.append(f"[{_short(label)}]" if x.columns.is_unique else f".iloc[:, {i}]")
            raise
    seen.discard(key)


def _categorical(out: bytearray, x: Any, seen: set) -> None:
    out += b"h"
    _pandas_index(out, x.categories, seen)
    _bool(out, bool(x.ordered), seen)
    _ndarray(out, x.codes, seen)


def _pandas_timestamp(out: bytearray, x: Any, seen: set) -> None:
    out += b"R"
    _encode(out, x.asm8, seen)  # numpy datetime64: UTC instant and unit
    _encode(out, x.tzinfo, seen)
    out += bytes((x.fold,))


def _pandas_timedelta(out: bytearray, x: Any, seen: set) -> None:
    out += b"D"
    _encode(out, x.asm8, seen)


def _pandas_nat(out: bytearray, x: Any, seen: set) -> None:
    out += b"n"


def _pandas_na(out: bytearray, x: Any, seen: set) -> None:
    out += b"u"


def _third_party(cls: type) -> Encoder | None:
    """numpy and pandas types, by the (package, class name) of a class in the MRO."""
    for base in cls.__mro__:
        package = str(getattr(base, "__module__", "")).partition(".")[0]
        if package not in ("numpy", "pandas"):
            continue
        kind = (package, base.__name__)
        if kind == ("numpy", "MaskedArray"):
            return _masked_array(cls)
        if kind == ("numpy", "ndarray"):
            return _ndarray if cls is base else _ndarray_subclass(cls, base)
        if kind == ("numpy", "generic"):
            return _numpy_scalar(cls)
        if kind == ("numpy", "dtype"):
            return _numpy_dtype
        encoder = _PANDAS.get(base.__name__) if package == "pandas" else None
        if encoder is not None:  # frames, series and indexes encode their class name themselves
            named = base.__name__ in ("DataFrame", "Series", "Index")
            return encoder if cls is base or named else _wrapped(cls, encoder)
    return None


def _wrapped(cls: type, encode: Encoder) -> Encoder:
    name = _name(cls)

    def encoder(out: bytearray, x: Any, seen: set) -> None:
        out += b"<" + name
        encode(out, x, seen)
    return encoder


_PANDAS: dict[str, Encoder] = {
    "DataFrame": _pandas_frame, "Series": _pandas_series, "Index": _pandas_index,
    "Categorical": _categorical, "Timestamp": _pandas_timestamp,
    "Timedelta": _pandas_timedelta, "NaTType": _pandas_nat, "NAType": _pandas_na,
}


# -- everything else: the object's reduce value ------------------------------------------------


def _callable(out: bytearray, fn: Any, seen: set) -> None:
    """A callable named in a reduce value: by name, never called, never fingerprinted."""
    if isinstance(fn, type):
        _type(out, fn, seen)
        return
    if getattr(fn, "__qualname__", None) is None:
        _encode(out, fn, seen)
        return
    out += b"g" + _name(fn)
    owner = getattr(fn, "__self__", None)
    _encode(out, None if isinstance(owner, types.ModuleType) else owner, seen)


def _reduce(out: bytearray, x: Any, seen: set) -> None:
    cls = type(x)
    key = _enter(x, seen)
    try:
        value = x.__reduce_ex__(4)
    except Exception as exc:
        raise _Unhashable(f"a {_qualname(cls)} cannot be encoded ({exc})") from None
    if isinstance(value, str):  # a module-level singleton, named
        out += b"G" + _text(str(getattr(x, "__module__", None) or cls.__module__)) + _text(value)
        seen.discard(key)
        return
    if not isinstance(value, tuple) or not 2 <= len(value) <= 6:
        raise _Unhashable(f"{_qualname(cls)}.__reduce_ex__(4) returned {type(value).__name__}, "
                          "not a reduce tuple")
    fn, args, state, items, mapping, setter = value + (None,) * (6 - len(value))
    out += b"O"
    _callable(out, fn, seen)
    try:
        _encode(out, args, seen)
    except _Unhashable as exc:
        exc.path.append(".__reduce_ex__(4)[1]")
        raise
    _state(out, state, seen)
    try:
        _encode(out, None if items is None else list(items), seen)
        _encode(out, None if mapping is None else list(mapping), seen)
    except _Unhashable as exc:
        exc.path.append(".__reduce_ex__(4)[3:5]")
        raise
    if setter is None:
        out += b"N"
    else:
        _callable(out, setter, seen)
    seen.discard(key)


def _resolve(cls: type) -> Encoder:
    """The encoder of a type outside the built-in table, remembered for next time."""
    encoder = _choose(cls)
    if len(_ENCODERS) > 4096:  # dynamically created classes: keep the table bounded
        _ENCODERS.clear()
        _ENCODERS.update(_BUILTINS)
    _ENCODERS[cls] = encoder
    return encoder


def _choose(cls: type) -> Encoder:
    if issubclass(cls, enum.Enum):  # before int and str: IntEnum, StrEnum
        return _enum
    if issubclass(cls, type):
        return _type
    encoder = _third_party(cls)
    if encoder is not None:
        return encoder
    if callable(getattr(cls, "model_dump", None)) and hasattr(cls, "model_fields"):
        return _pydantic(cls)
    if hasattr(cls, "__dataclass_fields__") and "dataclasses" in sys.modules:
        return _dataclass(cls)
    if issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple):
        return _namedtuple(cls)
    bases = _value_bases()
    for base in cls.__mro__:
        encoder = bases.get(base)
        if encoder is not None:
            if base is cls or encoder is _path:
                return encoder
            return _subclass(cls, base, encoder)
    return _reduce


def _encode(out: bytearray, x: Any, seen: set) -> None:
    (_ENCODERS.get(type(x)) or _resolve(type(x)))(out, x, seen)


# -- public API -------------------------------------------------------------------------------


def _error(exc: _Unhashable, root: str) -> CacheKeyError:
    return CacheKeyError(f"cannot hash {exc.where(root)} into a cache key: {exc.reason}")


def canonical_bytes(value: Any) -> bytes:
    """The canonical encoding of `value`, scheme version byte first (CacheKeyError if none)."""
    out = bytearray(_HEADER)
    try:
        _encode(out, value, set())
    except _Unhashable as exc:
        raise _error(exc, "value") from None
    except RecursionError:
        raise CacheKeyError("cannot hash value into a cache key: it is nested too deeply") from None
    return bytes(out)


def hash_objects(*values: Any) -> str:
    """A hex digest of `values`, identical in every process and under any PYTHONHASHSEED."""
    out = bytearray(_HEADER)
    try:
        _tuple(out, values, set())
    except _Unhashable as exc:
        raise _error(exc, "values") from None
    except RecursionError:
        raise CacheKeyError("cannot hash values into a cache key: nested too deeply") from None
    return hashlib.blake2b(out, digest_size=_DIGEST_SIZE).hexdigest()


def hash_inputs(inputs: dict[str, Any]) -> str:
    """A hex digest of a task's inputs (that of `canonical_bytes(inputs)`).

    CacheKeyError names the argument and where in it the value is that cannot be encoded.
    """
    out = bytearray(_HEADER)
    out += b"d" + _len(len(inputs))
    seen: set = set()
    try:
        names = sorted(inputs)
    except TypeError:  # names of several types: not a task's
        names = [None]
    for name in names:
        if type(name) is not str:
            return hashlib.blake2b(canonical_bytes(dict(inputs)), digest_size=_DIGEST_SIZE).hexdigest()
        _str(out, name, seen)
        value = inputs[name]
        try:
            (_ENCODERS.get(type(value)) or _resolve(type(value)))(out, value, seen)
        except _Unhashable as exc:
            raise CacheKeyError(
                f"cannot compute a cache key from argument {name!r}: {exc.where(name)} - "
                f"{exc.reason}. Exclude the argument (cache_policy=INPUTS - {name!r}) "
                "or pass a cache_key_fn."
            ) from None
        except RecursionError:
            raise CacheKeyError(
                f"cannot compute a cache key from argument {name!r}: it is nested too deeply. "
                f"Exclude the argument (cache_policy=INPUTS - {name!r}) or pass a cache_key_fn."
            ) from None
    return hashlib.blake2b(out, digest_size=_DIGEST_SIZE).hexdigest()


__all__ = ["VERSION", "canonical_bytes", "hash_inputs", "hash_objects"]
