"""What TASK_SOURCE hashes: a fingerprint of the code a function runs.

`code_fingerprint(fn)` hashes, for the Python minor version it runs on:

- the function's bytecode (not its source text): instructions, constants
  (nested code objects included), names, argument counts and flags. Comments,
  blank lines and line numbers do not count; the same code gives the same
  fingerprint in a module, in `__main__`, in a notebook, in exec'd code and
  when cloudpickled to a worker that has no source;
- its defaults and the values in its closure cells: functions and classes are
  followed, other values `hashing` can encode are hashed as they are when the
  function is first fingerprinted (so `make(2)` and `make(3)` differ, but a
  list the task appends to does not change its key), anything else counts by
  its type's name;
- the module-level names its code reads: simple values (numbers, str, bytes,
  bool, None, enum members, tuples and frozensets of them) are hashed; lists,
  dicts and other objects count by their type's name only;
- the functions and classes it uses from the user's own modules, followed
  transitively (to depth 8, at most 256 of them, cycles included), through
  `__wrapped__` and the `.fn` of tasks; for a user module it uses
  (`helpers.f()`), the module's attributes named in the code; for a class, its
  methods and simple class attributes.

Code is the user's unless its file is in the standard library or in
site-packages (or it is built in); a function counts by the file its code
comes from, so a library's wrapper around a user function counts as the
library. The standard library counts by Python's version, an installed package
by its name and version, never by its source.

The analysis is cached per function, with the objects it saw; a call checks
that each name, attribute and closure cell still holds the same object (`is`)
and redoes the analysis only when one does not.
"""

from __future__ import annotations

import builtins
import enum
import functools
import hashlib
import numbers
import os
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

from .exceptions import CacheKeyError
from .hashing import canonical_bytes, code_digest

_DIGEST_SIZE = 16
_MAX_DEPTH = 8
_MAX_NODES = 256
_PYTHON = f"{sys.implementation.name}-{sys.version_info[0]}.{sys.version_info[1]}"
_HEADER = f"stashflow-code-1 {_PYTHON}\0".encode()
_MISSING: Any = object()
_EMPTY: Any = object()  # an empty closure cell
_BUILTINS = builtins.__dict__


def _text(s: str) -> bytes:
    data = s.encode("utf-8", "surrogatepass")
    return len(data).to_bytes(4, "little") + data


def _qualname(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
    return f"{module}.{name}" if isinstance(module, str) else str(name)


# -- where code comes from ------------------------------------------------------------------

_KINDS: dict[str, str] = {}  # module name -> "user", "stdlib" or "package"


@functools.cache
def _system_paths() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(site-packages directories, standard library directories), resolved."""
    import site
    import sysconfig

    paths = sysconfig.get_paths()
    packages = {paths["purelib"], paths["platlib"], *site.getsitepackages(),
                site.getusersitepackages()}
    packages.update(p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages"))
    stdlib = {paths["stdlib"], paths["platstdlib"]}

    def resolved(dirs: set[str]) -> tuple[str, ...]:
        return tuple(sorted({os.path.join(os.path.realpath(d), "") for d in dirs if d}))
    return resolved(packages), resolved(stdlib)


def _kind(module: str | None) -> str:
    """Whether a module is the user's code, the standard library or an installed package."""
    if not module or module == "__main__":
        return "user"
    found = _KINDS.get(module)
    if found is not None:
        return found
    mod = sys.modules.get(module)
    if mod is None:  # exec'd code, or code shipped by value (cloudpickle)
        return "user"
    spec = getattr(mod, "__spec__", None)
    file = getattr(mod, "__file__", None) or next(
        iter(getattr(spec, "submodule_search_locations", None) or ()), None)
    if module.partition(".")[0] in sys.builtin_module_names or (
            file is None and getattr(spec, "origin", None) in ("built-in", "frozen")):
        kind = "stdlib"
    else:
        kind = "user" if file is None else _file(file)[0]
    _KINDS[module] = kind
    return kind


@functools.lru_cache(maxsize=4096)
def _file(filename: str) -> tuple[str, str]:
    """(kind, top-level package) of the file code was loaded from."""
    if filename.startswith("<"):  # exec'd code, `python -c`, a REPL
        return "user", ""
    path = os.path.realpath(filename)
    packages, stdlib = _system_paths()
    for prefix in packages:
        if path.startswith(prefix):
            top = path[len(prefix):].split(os.sep, 1)[0]
            return "package", top[:-3] if top.endswith(".py") else top
    if path.startswith(stdlib):
        return "stdlib", ""
    return "user", ""


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    from importlib import metadata

    return metadata.packages_distributions()


@functools.cache
def _version(package: str) -> str:
    version = getattr(sys.modules.get(package), "__version__", None)
    if isinstance(version, str):
        return version
    from importlib import metadata

    found = []
    for dist in sorted(set(_packages_distributions().get(package, ()))):
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found) or "unknown"


def _identity(obj: Any, module: str | None) -> str:
    """An installed or standard-library object: its package's name and version, and its name."""
    module = module or "builtins"
    return _library(obj, _kind(module), module.partition(".")[0])


def _library(obj: Any, kind: str, package: str) -> str:
    if kind == "stdlib" or not package:
        return f"python {_PYTHON}: {_qualname(obj)}"
    return f"{package} {_version(package)}: {_qualname(obj)}"


def _function_origin(fn: types.FunctionType) -> tuple[str, str]:
    """(kind, package) of the file a function's code comes from: a library's wrapper
    copies the user function's __module__, but its code is the library's."""
    kind, package = _file(fn.__code__.co_filename)
    if kind == "user" and _kind(fn.__module__) != "user":  # generated code of a library
        kind, package = _kind(fn.__module__), (fn.__module__ or "").partition(".")[0]
    return kind, package


# -- code objects ---------------------------------------------------------------------------


class _Code:
    """What one code object contributes: its digest and the names it reads."""

    __slots__ = ("digest", "globals", "names")

    def __init__(self, digest: bytes, global_names: tuple[str, ...], names: tuple[str, ...]):
        self.digest = digest
        self.globals = global_names
        self.names = names


_CODES: dict[types.CodeType, _Code] = {}
_GLOBAL_READS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})


def _code(code: types.CodeType) -> _Code:
    found = _CODES.get(code)
    if found is None:
        global_names: list[str] = []
        names: list[str] = []
        _names(code, global_names, names)
        found = _Code(code_digest(code), tuple(dict.fromkeys(global_names)),
                      tuple(dict.fromkeys(names)))
        if len(_CODES) > 4096:
            _CODES.clear()
        _CODES[code] = found
    return found


def _names(code: types.CodeType, global_names: list[str], names: list[str]) -> None:
    """The names a code object (and the code nested in it) reads, globals apart."""
    import dis

    names.extend(code.co_names)
    global_names.extend(i.argval for i in dis.get_instructions(code) if i.opname in _GLOBAL_READS)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _names(const, global_names, names)


# -- the analysis ---------------------------------------------------------------------------


def _simple(value: Any) -> bool:
    """An immutable value a module-level name may hold and the fingerprint hashes."""
    kind = type(value)
    if kind in (str, int, float, bool, bytes, complex, type(None)):
        return True
    if kind is tuple or kind is frozenset:
        return all(_simple(v) for v in value)
    return isinstance(value, (enum.Enum, numbers.Number))


_CALLABLES = (types.FunctionType, type, types.MethodType, functools.partial,
              types.BuiltinFunctionType)


def _followed(value: Any) -> bool:
    """Code the fingerprint follows: functions, classes, methods, wrappers, tasks."""
    if isinstance(value, _CALLABLES):
        return True
    attrs = getattr(value, "__dict__", None)
    return isinstance(attrs, dict) and ("__wrapped__" in attrs or _task_fn(value) is not None)


def _task_fn(value: Any) -> Any:
    """The function of a stashflow Task (or Flow), recognised without importing the engine."""
    if type(value).__module__.startswith("stashflow."):
        fn = vars(value).get("fn")
        if isinstance(fn, types.FunctionType):
            return fn
    return None


class _Fingerprint:
    """One function's analysis: its static digest and what a call re-checks."""

    __slots__ = ("attrs", "cells", "hex", "names")

    def __init__(self, static: bytes, names: list, attrs: list, cells: list):
        self.names = names  # (mapping, name, object seen)
        self.attrs = attrs  # (owner, attribute, object seen)
        self.cells = cells  # (closure cell, object seen)
        self.hex = hashlib.blake2b(static, digest_size=_DIGEST_SIZE).hexdigest()

    def valid(self) -> bool:
        for mapping, name, seen in self.names:
            if mapping.get(name, _MISSING) is not seen:
                return False
        for owner, attr, seen in self.attrs:
            if getattr(owner, attr, _MISSING) is not seen:
                return False
        for cell, seen in self.cells:
            try:
                if cell.cell_contents is not seen:
                    return False
            except ValueError:  # empty
                if seen is not _EMPTY:
                    return False
        return True


def _snapshot(value: Any) -> bytes:
    """A closure or default value as it is now: its encoding, else its type's name."""
    try:
        return b"=" + canonical_bytes(value)
    except CacheKeyError:
        return b"?" + _text(_qualname(type(value)))


class _Analyzer:
    def __init__(self) -> None:
        self.out = bytearray(_HEADER)
        self.names: list = []
        self.attrs: list = []
        self.cells: list = []
        self.nodes: dict[int, int] = {}
        self.modules: set[tuple[int, int]] = set()
        self.keep: list = []  # what the ids in `nodes` and `modules` belong to

    def result(self) -> _Fingerprint:
        return _Fingerprint(bytes(self.out), self.names, self.attrs, self.cells)

    def node(self, obj: Any, depth: int) -> None:
        """Code that runs: a function, class, method, partial, wrapper or task."""
        out = self.out
        index = self.nodes.get(id(obj))
        if index is not None:
            out += b"@" + index.to_bytes(4, "little")
            return
        if depth > _MAX_DEPTH or len(self.nodes) >= _MAX_NODES:
            out += b"~" + _text(_qualname(obj))
            return
        self.nodes[id(obj)] = len(self.nodes)
        self.keep.append(obj)
        if isinstance(obj, types.FunctionType):
            kind, package = _function_origin(obj)
            if kind == "user":
                self.function(obj, depth)
            else:  # a library's function, or its wrapper around the user's
                out += b"P" + _text(_library(obj, kind, package))
                wrapped = obj.__dict__.get("__wrapped__", _MISSING)
                if wrapped is not _MISSING:
                    self.names.append((obj.__dict__, "__wrapped__", wrapped))
                    self.node(wrapped, depth + 1)
        elif isinstance(obj, type):
            if _kind(obj.__module__) == "user":
                self.cls(obj, depth)
            else:
                out += b"P" + _text(_identity(obj, obj.__module__))
        elif isinstance(obj, types.MethodType):
            out += b"m"
            self.node(obj.__func__, depth + 1)
            owner = obj.__self__
            self.node(owner if isinstance(owner, type) else type(owner), depth + 1)
        elif isinstance(obj, functools.partial):
            out += b"p"
            self.node(obj.func, depth + 1)
            for arg in obj.args:
                self.value(arg, depth, (), closure=True)
            for key in sorted(obj.keywords):
                out += _text(key)
                self.value(obj.keywords[key], depth, (), closure=True)
        elif isinstance(obj, types.BuiltinFunctionType):
            module = getattr(obj, "__module__", None)
            owner = getattr(obj, "__self__", None)
            if module is None and owner is not None and not isinstance(owner, types.ModuleType):
                module = type(owner).__module__
            out += b"P" + _text(_identity(obj, module))
        elif _task_fn(obj) is not None:
            fn = _task_fn(obj)
            self.names.append((vars(obj), "fn", fn))
            out += b"t"
            self.node(fn, depth + 1)
        elif "__wrapped__" in getattr(obj, "__dict__", ()):
            wrapped = obj.__dict__["__wrapped__"]
            self.names.append((obj.__dict__, "__wrapped__", wrapped))
            out += b"w" + _text(_qualname(type(obj)))
            self.node(wrapped, depth + 1)
        else:
            out += b"?" + _text(_qualname(type(obj)))

    def value(self, value: Any, depth: int, names: tuple[str, ...], closure: bool) -> None:
        """A value the code reads: hashed when simple, followed when code. Closure cells and
        defaults (`closure`) also hash any other value `hashing` can encode, as it is now."""
        out = self.out
        if value is _EMPTY:
            out += b"_"
        elif _simple(value):
            out += b"=" + canonical_bytes(value)
        elif isinstance(value, types.ModuleType):
            self.module(value, depth, names)
        elif _followed(value):
            self.node(value, depth + 1)
        elif closure:
            out += _snapshot(value)
        else:  # a list, a dict, an object at module level: not covered
            out += b"?" + _text(_qualname(type(value)))

    def function(self, fn: types.FunctionType, depth: int) -> None:
        out = self.out
        code = fn.__code__
        info = _code(code)
        self.attrs.append((fn, "__code__", code))
        out += b"F" + info.digest
        closure = fn.__closure__ or ()
        for cell in closure:
            try:
                value = cell.cell_contents
            except ValueError:
                value = _EMPTY
            self.cells.append((cell, value))
            self.value(value, depth, info.names, closure=True)
        for attr in ("__defaults__", "__kwdefaults__"):
            defaults = getattr(fn, attr)
            if defaults is not None:
                self.attrs.append((fn, attr, defaults))
                for key in (sorted(defaults) if isinstance(defaults, dict) else ()):
                    out += _text(key)
                    self.value(defaults[key], depth, info.names, closure=True)
                for value in (defaults if isinstance(defaults, tuple) else ()):
                    self.value(value, depth, info.names, closure=True)
        attrs = fn.__dict__
        if "__wrapped__" in attrs:
            self.names.append((attrs, "__wrapped__", attrs["__wrapped__"]))
            out += b"w"
            self.node(attrs["__wrapped__"], depth + 1)
        module_globals = fn.__globals__
        for name in info.globals:
            value = module_globals.get(name, _MISSING)
            if value is _MISSING and name in _BUILTINS:
                continue  # a builtin: part of Python's version
            self.names.append((module_globals, name, value))
            out += b"." + _text(name)
            if value is _MISSING:
                out += b"-"
            else:
                self.value(value, depth, info.names, closure=False)

    def module(self, module: types.ModuleType, depth: int, names: tuple[str, ...]) -> None:
        """A module the code uses: a user module's attributes named in the code."""
        out = self.out
        if _kind(module.__name__) != "user":
            out += b"P" + _text(_identity(module, module.__name__))
            return
        out += b"M" + _text(module.__name__)
        key = (id(module), id(names))
        if key in self.modules or depth > _MAX_DEPTH:
            out += b"@"
            return
        self.modules.add(key)
        self.keep.append((module, names))
        attrs = module.__dict__
        for name in names:
            value = attrs.get(name, _MISSING)
            if value is not _MISSING:
                self.names.append((attrs, name, value))
                out += b"." + _text(name)
                self.value(value, depth + 1, names, closure=False)

    def cls(self, cls: type, depth: int) -> None:
        """A user class: its bases, methods and simple class attributes."""
        out = self.out
        out += b"K" + _text(_qualname(cls))
        for base in cls.__bases__:
            if base is not object:
                self.node(base, depth + 1)
        attrs = cls.__dict__
        for name in sorted(attrs):
            value = attrs[name]
            code = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            if isinstance(code, property):
                self.names.append((attrs, name, value))
                out += b"." + _text(name) + b"property"
                for accessor in (code.fget, code.fset, code.fdel):
                    self.value(accessor, depth, (), closure=False)
            elif isinstance(code, (types.FunctionType, type)) or _simple(value):
                self.names.append((attrs, name, value))
                out += b"." + _text(name)
                self.value(code, depth, (), closure=False)


# -- public API -----------------------------------------------------------------------------

_CACHE: dict[Any, _Fingerprint] = {}
_active = threading.local()


def code_fingerprint(fn: Callable) -> str:
    """A hex digest of the code `fn` runs: its bytecode, closure, the simple module-level
    values it reads and the user functions and classes it uses, transitively."""
    try:
        entry = _CACHE.get(fn)
    except TypeError:  # an unhashable callable: analysed on every call
        entry = None
    if entry is not None and entry.valid():
        return entry.hex
    running = _active.__dict__.setdefault("ids", set())
    if id(fn) in running:  # reached again while hashing its own closure's values
        return hashlib.blake2b(b"recursive " + _qualname(fn).encode(),
                               digest_size=_DIGEST_SIZE).hexdigest()
    running.add(id(fn))
    try:
        analyzer = _Analyzer()
        analyzer.node(fn, 0)
        entry = analyzer.result()
    finally:
        running.discard(id(fn))
    try:
        if len(_CACHE) > 4096:
            _CACHE.clear()
        _CACHE[fn] = entry
    except TypeError:
        pass
    return entry.hex


source_hash = code_fingerprint  # the name TASK_SOURCE's hash had before; the same function

__all__ = ["code_fingerprint", "source_hash"]
