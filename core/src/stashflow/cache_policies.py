"""Cache policies: how a task run's cache key (and so its file name) is computed.

A policy's `compute_key(context, inputs, flow_parameters)` returns a string key
or None (no caching). Policies combine with `+` and drop an input with
`INPUTS - "name"`; `configure(...)` returns a copy with an isolation level, a
lock manager or a storage for the records.

Input hashing is canonical: every value is turned into a byte encoding that
depends only on the value (sets and dict entries are sorted by their encoded
bytes, floats by their IEEE bits), never on `id()`, `hash()` or
PYTHONHASHSEED, and then hashed with BLAKE2b. A value of a type the encoder
does not know is pickled as a last resort; a value that cannot be encoded at
all raises CacheKeyError naming the argument.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import struct
from collections.abc import Callable, Iterable
from typing import Any

from .exceptions import CacheKeyError
from .hookspecs import hookimpl

_UNSET: Any = object()
_DIGEST_SIZE = 16  # 32 hex characters: a short, collision-safe file name


# -- canonical encoding ----------------------------------------------------------------


class _Unhashable(Exception):
    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason


def _len(n: int) -> bytes:
    return n.to_bytes(8, "little")


def _int(out: bytearray, x: int, _seen: set, _path: str) -> None:
    data = x.to_bytes((x.bit_length() + 8) // 8 or 1, "little", signed=True)
    out += b"i" + _len(len(data)) + data


def _bool(out: bytearray, x: bool, _seen: set, _path: str) -> None:
    out += b"T" if x else b"F"


def _none(out: bytearray, _x: None, _seen: set, _path: str) -> None:
    out += b"N"


def _float(out: bytearray, x: float, _seen: set, _path: str) -> None:
    if x != x:  # every NaN is the same input
        out += b"fnan"
    else:
        out += b"f" + struct.pack("<d", x + 0.0)  # + 0.0 folds -0.0 into 0.0


def _str(out: bytearray, x: str, _seen: set, _path: str) -> None:
    data = x.encode("utf-8", "surrogatepass")
    out += b"s" + _len(len(data)) + data


def _bytes(out: bytearray, x: bytes | bytearray | memoryview, _seen: set, _path: str) -> None:
    data = bytes(x)
    out += b"b" + _len(len(data)) + data


def _sequence(tag: bytes):
    def encode(out: bytearray, x: Any, seen: set, path: str) -> None:
        _enter(x, seen, path)
        out += tag + _len(len(x))
        for i, item in enumerate(x):
            _encode(out, item, seen, f"{path}[{i}]")
        seen.discard(id(x))
    return encode


def _encoded(x: Any, seen: set, path: str) -> bytes:
    buf = bytearray()
    _encode(buf, x, seen, path)
    return bytes(buf)


def _set(out: bytearray, x: set | frozenset, seen: set, path: str) -> None:
    _enter(x, seen, path)
    items = sorted(_encoded(item, seen, f"{path}{{...}}") for item in x)
    out += b"S" + _len(len(items))
    for item in items:
        out += item
    seen.discard(id(x))


def _dict(out: bytearray, x: dict, seen: set, path: str) -> None:
    _enter(x, seen, path)
    pairs = sorted(
        (_encoded(k, seen, f"{path}.keys()"), _encoded(v, seen, f"{path}[{k!r}]"))
        for k, v in x.items()
    )
    out += b"d" + _len(len(pairs))
    for k, v in pairs:
        out += k + v
    seen.discard(id(x))


def _enter(x: Any, seen: set, path: str) -> None:
    if id(x) in seen:
        raise _Unhashable(path, "it contains itself")
    seen.add(id(x))


_ENCODERS: dict[type, Callable[[bytearray, Any, set, str], None]] = {
    int: _int, bool: _bool, type(None): _none, float: _float, str: _str,
    bytes: _bytes, bytearray: _bytes, memoryview: _bytes,
    tuple: _sequence(b"t"), list: _sequence(b"l"),
    set: _set, frozenset: _set, dict: _dict,
}


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _numpy(out: bytearray, x: Any, seen: set, path: str) -> bool:
    """numpy arrays and scalars, recognised by module name: numpy is never imported here."""
    if not hasattr(x, "dtype"):
        return False
    if hasattr(x, "shape") and hasattr(x, "tobytes") and x.dtype.kind != "O":
        out += b"A"
        _str(out, x.dtype.str, seen, path)
        _encode(out, tuple(x.shape), seen, path)
        _bytes(out, x.tobytes(order="C"), seen, path)
        return True
    if hasattr(x, "tolist"):  # an object array or a numpy scalar
        out += b"a"
        _str(out, x.dtype.str, seen, path)
        _encode(out, x.tolist(), seen, path)
        return True
    return False


def _fallback(out: bytearray, x: Any, seen: set, path: str) -> None:
    cls = type(x)
    module = cls.__module__ or ""
    for base, encode in _ENCODERS.items():  # subclasses of the built-in types
        if isinstance(x, base) and base is not type(None):
            out += b"<" + _qualname(cls).encode() + b">"
            encode(out, x, seen, path)
            return
    if module.split(".", 1)[0] == "numpy" and _numpy(out, x, seen, path):
        return
    if hasattr(cls, "__dataclass_fields__"):
        import dataclasses

        _enter(x, seen, path)
        out += b"D" + _qualname(cls).encode() + b"\0"
        for f in dataclasses.fields(x):
            _str(out, f.name, seen, path)
            _encode(out, getattr(x, f.name), seen, f"{path}.{f.name}")
        seen.discard(id(x))
        return
    if isinstance(x, type):
        out += b"C" + _qualname(x).encode() + b"\0"
        return
    if inspect.isfunction(x):  # by name and code, so editing it changes the key
        out += b"R" + _qualname(x).encode() + b"\0" + source_hash(x).encode()
        return
    import datetime
    import decimal
    import enum
    import pathlib
    import uuid

    if isinstance(x, enum.Enum):
        out += b"E" + _qualname(cls).encode() + b"\0"
        _encode(out, x.value, seen, path)
        return
    if isinstance(x, (datetime.date, datetime.time, datetime.timedelta, decimal.Decimal,
                      uuid.UUID, pathlib.PurePath, complex)):
        out += b"V" + _qualname(cls).encode() + b"\0"
        _str(out, str(x), seen, path)
        return
    if _plain_instance(x):
        _enter(x, seen, path)
        out += b"O" + _qualname(cls).encode() + b"\0"
        _dict(out, vars(x), seen, path)
        seen.discard(id(x))
        return
    _pickled(out, x, path)


def _plain_instance(x: Any) -> bool:
    """An instance whose state is just its __dict__ (no custom pickling)."""
    cls = type(x)
    return (
        hasattr(x, "__dict__")
        and cls.__reduce_ex__ is object.__reduce_ex__
        and cls.__reduce__ is object.__reduce__
        and getattr(cls, "__getstate__", object.__getstate__) is object.__getstate__
        and not hasattr(cls, "__slots__")
    )


def _pickled(out: bytearray, x: Any, path: str) -> None:
    """Last resort for types the encoder does not know: their pickle bytes.

    Pickle bytes are stable for a given value and library version but not
    canonical in general; known types never take this path.
    """
    import pickle

    try:
        data = pickle.dumps(x, protocol=4)
    except Exception as exc:
        raise _Unhashable(path, f"{type(x).__name__} cannot be encoded ({exc})") from None
    out += b"P" + _len(len(data)) + data


def _encode(out: bytearray, x: Any, seen: set, path: str) -> None:
    encode = _ENCODERS.get(type(x))
    if encode is not None:
        encode(out, x, seen, path)
    else:
        _fallback(out, x, seen, path)


def canonical_bytes(value: Any) -> bytes:
    """The canonical byte encoding of `value` (CacheKeyError if it has none)."""
    try:
        return _encoded(value, set(), "value")
    except _Unhashable as exc:
        raise CacheKeyError(f"cannot hash {exc.path} into a cache key: {exc.reason}") from None


def hash_objects(*values: Any) -> str:
    """A hex digest of `values`, identical in every process and under any PYTHONHASHSEED."""
    try:
        data = _encoded(values, set(), "value")
    except _Unhashable as exc:
        raise CacheKeyError(f"cannot hash {exc.path} into a cache key: {exc.reason}") from None
    return hashlib.blake2b(data, digest_size=_DIGEST_SIZE).hexdigest()


def hash_inputs(inputs: dict[str, Any]) -> str:
    """A hex digest of a task's inputs; CacheKeyError names the argument that fails."""
    out = bytearray(b"d" + _len(len(inputs)))
    seen: set = set()
    for name in sorted(inputs):
        _str(out, name, seen, name)
        try:
            _encode(out, inputs[name], seen, name)
        except _Unhashable as exc:
            raise CacheKeyError(
                f"cannot hash argument {name!r} into a cache key: {exc.path} - {exc.reason}. "
                f"Exclude it (cache_policy=INPUTS - {name!r}) or pass a cache_key_fn."
            ) from None
    return hashlib.blake2b(out, digest_size=_DIGEST_SIZE).hexdigest()


# -- policies ----------------------------------------------------------------------------


_SETTINGS = ("isolation_level", "lock_manager", "key_storage")
_ISOLATION_LEVELS = (None, "READ_COMMITTED", "SERIALIZABLE")


class CachePolicy:
    """Base class: computes a task run's cache key, or None for "do not cache".

    A subclass implements `compute_key`; policies are treated as immutable
    (`configure`, `+` and `-` return new ones). `_fields` names the attributes
    that make two policies of one class equal.
    """

    isolation_level: str | None = None
    lock_manager: Any = None
    key_storage: Any = None
    _fields: tuple[str, ...] = ()

    def compute_key(self, context: Any, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any] | None) -> str | None:
        raise NotImplementedError

    def configure(self, *, isolation_level: str | None = _UNSET, lock_manager: Any = _UNSET,
                  key_storage: Any = _UNSET) -> CachePolicy:
        """A copy with the given isolation level, lock manager or record storage."""
        changes = {k: v for k, v in (("isolation_level", isolation_level),
                                     ("lock_manager", lock_manager),
                                     ("key_storage", key_storage)) if v is not _UNSET}
        if changes.get("isolation_level") not in _ISOLATION_LEVELS:
            raise ValueError(f"isolation_level must be None, 'READ_COMMITTED' or 'SERIALIZABLE', "
                             f"not {changes['isolation_level']!r}")
        return self._replace(**changes)

    def _replace(self, **changes: Any) -> CachePolicy:
        new = copy.copy(self)
        vars(new).update(changes)
        return new

    def _settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _SETTINGS}

    def _parts(self) -> tuple[CachePolicy, ...]:
        return (self,)

    def __eq__(self, other: object) -> bool:
        return (type(self) is type(other)
                and all(getattr(self, f) == getattr(other, f) for f in self._fields)
                and self.isolation_level == other.isolation_level)

    def __hash__(self) -> int:
        return hash((type(self), *(getattr(self, f) for f in self._fields)))

    def __repr__(self) -> str:
        return type(self).__name__ + "()"

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        parts = tuple(p for p in (*self._parts(), *other._parts()) if not isinstance(p, _NoCache))
        if not parts:
            return NO_CACHE
        settings = {**self._settings(),
                    **{k: v for k, v in other._settings().items() if v is not None}}
        if len(parts) == 1:
            return parts[0]._replace(**settings)
        return CompoundPolicy(parts)._replace(**settings)

    def __sub__(self, name: str) -> CachePolicy:
        if not isinstance(name, str):
            return NotImplemented
        raise ValueError(f"{self!r} does not hash inputs, so there is no input {name!r} to "
                         "exclude; subtract from INPUTS or a policy that contains it")


class CompoundPolicy(CachePolicy):
    """Several policies: the key hashes all their keys (None when all are None)."""

    _fields = ("policies",)

    def __init__(self, policies: Iterable[CachePolicy] = ()):
        self.policies = tuple(policies)

    def compute_key(self, context, inputs, flow_parameters):
        keys = [p.compute_key(context, inputs, flow_parameters) for p in self.policies]
        keys = [k for k in keys if k is not None]
        if not keys:
            return None
        if len(keys) == 1:
            return keys[0]
        return hashlib.blake2b("\0".join(keys).encode(), digest_size=_DIGEST_SIZE).hexdigest()

    def _parts(self):
        return self.policies

    def __sub__(self, name: str) -> CachePolicy:
        if not isinstance(name, str):
            return NotImplemented
        if not any(isinstance(p, Inputs) for p in self.policies):
            return super().__sub__(name)
        parts = tuple(p - name if isinstance(p, Inputs) else p for p in self.policies)
        return self._replace(policies=parts)

    def __repr__(self) -> str:
        return " + ".join(repr(p) for p in self.policies)


class Inputs(CachePolicy):
    """The task's arguments, hashed canonically; `exclude` leaves some out."""

    _fields = ("exclude",)

    def __init__(self, exclude: Iterable[str] = ()):
        self.exclude = tuple(exclude)

    def compute_key(self, context, inputs, flow_parameters):
        if self.exclude:
            inputs = {k: v for k, v in inputs.items() if k not in self.exclude}
        return hash_inputs(inputs)

    def __sub__(self, name: str) -> CachePolicy:
        if not isinstance(name, str):
            return NotImplemented
        return self._replace(exclude=(*self.exclude, name))

    def __repr__(self) -> str:
        return "INPUTS" + "".join(f" - {n!r}" for n in self.exclude)


_source_hashes: dict[Any, str] = {}


def _code_bytes(code: Any) -> bytes:
    parts = [code.co_code]
    for const in code.co_consts:
        parts.append(_code_bytes(const) if inspect.iscode(const) else repr(const).encode())
    parts.extend(name.encode() for name in code.co_names)
    return b"\0".join(parts)


def source_hash(fn: Callable) -> str:
    """A hash of `fn`'s source text (its bytecode when the source is unavailable), cached."""
    code = getattr(fn, "__code__", fn)
    found = _source_hashes.get(code)
    if found is None:
        try:
            data = inspect.getsource(fn).encode("utf-8")
        except (OSError, TypeError):
            data = _code_bytes(code) if inspect.iscode(code) else _qualname(fn).encode()
        found = _source_hashes[code] = hashlib.blake2b(data, digest_size=_DIGEST_SIZE).hexdigest()
    return found


class TaskSource(CachePolicy):
    """The task function's source code: editing the function invalidates its cache."""

    def compute_key(self, context, inputs, flow_parameters):
        return source_hash(context.task.fn)

    def __repr__(self) -> str:
        return "TASK_SOURCE"


class FlowParameters(CachePolicy):
    """The enclosing flow run's parameters (None outside a flow)."""

    def compute_key(self, context, inputs, flow_parameters):
        return None if flow_parameters is None else hash_inputs(flow_parameters)

    def __repr__(self) -> str:
        return "FLOW_PARAMETERS"


class RunId(CachePolicy):
    """The flow run's id (the task run's outside a flow): caches only within one run."""

    def compute_key(self, context, inputs, flow_parameters):
        flow_run = context.flow_run
        return flow_run.id if flow_run is not None else context.task_run.id

    def __repr__(self) -> str:
        return "RUN_ID"


class CacheKeyFnPolicy(CachePolicy):
    """A user function `cache_key_fn(context, parameters) -> str | None`."""

    _fields = ("fn",)

    def __init__(self, fn: Callable[..., str | None]):
        self.fn = fn

    def compute_key(self, context, inputs, flow_parameters):
        key = self.fn(context, inputs)
        if key is not None and not isinstance(key, str):
            raise CacheKeyError(f"cache_key_fn {_qualname(self.fn)} returned {key!r}; "
                                "it must return a str (the storage key) or None")
        return key

    def __repr__(self) -> str:
        return f"CacheKeyFnPolicy({_qualname(self.fn)})"


class _NoCache(CachePolicy):
    def compute_key(self, context, inputs, flow_parameters):
        return None

    def __repr__(self) -> str:
        return "NO_CACHE"


INPUTS = Inputs()
TASK_SOURCE = TaskSource()
FLOW_PARAMETERS = FlowParameters()
RUN_ID = RunId()
NO_CACHE = _NoCache()
DEFAULT = INPUTS + TASK_SOURCE + RUN_ID

BUILTIN_POLICIES = {
    "inputs": INPUTS, "task_source": TASK_SOURCE, "flow_parameters": FLOW_PARAMETERS,
    "run_id": RUN_ID, "no_cache": NO_CACHE, "default": DEFAULT,
}


def resolve_cache_policy(spec: CachePolicy | str | Iterable, registry: Any = None) -> CachePolicy:
    """A policy from an instance or a registered name."""
    if isinstance(spec, CachePolicy):
        return spec
    if isinstance(spec, str):
        from .plugins import get_registry

        policies = (registry or get_registry()).cache_policies
        try:
            return policies[spec]
        except KeyError:
            raise LookupError(f"unknown cache policy {spec!r} (registered: "
                              f"{', '.join(sorted(policies))})") from None
    raise TypeError(f"cache_policy must be a CachePolicy or a registered name, not {spec!r}")


@hookimpl
def register_cache_policies(register):
    for name, policy in BUILTIN_POLICIES.items():
        register(name, policy)


__all__ = [
    "DEFAULT", "FLOW_PARAMETERS", "INPUTS", "NO_CACHE", "RUN_ID", "TASK_SOURCE",
    "CacheKeyFnPolicy", "CachePolicy", "CompoundPolicy", "FlowParameters", "Inputs",
    "RunId", "TaskSource", "canonical_bytes", "hash_inputs", "hash_objects",
    "resolve_cache_policy", "source_hash",
]
