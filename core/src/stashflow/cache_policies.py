"""Cache policies: how a task run's cache key (and so its file name) is computed.

A policy's `compute_key(task_ctx, inputs, flow_parameters, **kwargs)` returns a
string key or None (no caching). Policies combine with `+` and drop an input with
`INPUTS - "name"`; `configure(...)` returns a copy with an isolation level, a
lock manager or a storage for the records.

Inputs are hashed by `stashflow.hashing` (a canonical, versioned encoding) and
the task's code by `stashflow.fingerprint`; their public functions are
re-exported here.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from .exceptions import CacheKeyError
from .fingerprint import code_fingerprint, source_hash
from .hashing import canonical_bytes, hash_inputs, hash_objects
from .hookspecs import hookimpl
from .isolation import isolation_level as as_isolation_level
from .registry import get_registry

_UNSET: Any = object()
_DIGEST_SIZE = 16  # 32 hex characters: a short, collision-safe file name


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


# -- policies ----------------------------------------------------------------------------


_SETTINGS = ("isolation_level", "lock_manager", "key_storage")


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

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any] | None,
                    flow_parameters: dict[str, Any] | None, **kwargs: Any) -> str | None:
        """The key of this run, or None (not cached). The engine passes the three
        positionally; the names and `**kwargs` are Prefect's, so policies and direct calls
        written for Prefect work unchanged."""
        raise NotImplementedError

    def configure(self, *, isolation_level: str | None = _UNSET, lock_manager: Any = _UNSET,
                  key_storage: Any = _UNSET) -> CachePolicy:
        """A copy with the given isolation level, lock manager or record storage."""
        changes = {k: v for k, v in (("isolation_level", isolation_level),
                                     ("lock_manager", lock_manager),
                                     ("key_storage", key_storage)) if v is not _UNSET}
        if "isolation_level" in changes:
            changes["isolation_level"] = as_isolation_level(changes["isolation_level"])
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

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
        keys = [p.compute_key(task_ctx, inputs, flow_parameters, **kwargs) for p in self.policies]
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

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
        if inputs is None:
            inputs = {}
        if self.exclude:
            inputs = {k: v for k, v in inputs.items() if k not in self.exclude}
        return hash_inputs(inputs)

    def __sub__(self, name: str) -> CachePolicy:
        if not isinstance(name, str):
            return NotImplemented
        return self._replace(exclude=(*self.exclude, name))

    def __repr__(self) -> str:
        return "INPUTS" + "".join(f" - {n!r}" for n in self.exclude)


class TaskSource(CachePolicy):
    """The code the task runs (`fingerprint.code_fingerprint`): editing it invalidates its cache."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
        if task_ctx is None:
            return None
        task = task_ctx.task
        return code_fingerprint(getattr(task, "fn", task))

    def __repr__(self) -> str:
        return "TASK_SOURCE"


class FlowParameters(CachePolicy):
    """The enclosing flow run's parameters (None outside a flow)."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
        return None if flow_parameters is None else hash_inputs(flow_parameters)

    def __repr__(self) -> str:
        return "FLOW_PARAMETERS"


class RunId(CachePolicy):
    """The flow run's id (the task run's outside a flow): caches only within one run."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
        if task_ctx is None:
            return None
        flow_run = task_ctx.flow_run
        return flow_run.id if flow_run is not None else task_ctx.task_run.id

    def __repr__(self) -> str:
        return "RUN_ID"


class CacheKeyFnPolicy(CachePolicy):
    """A user function `cache_key_fn(context, parameters) -> str | None`."""

    _fields = ("fn",)

    def __init__(self, fn: Callable[..., str | None] | None = None, *,
                 cache_key_fn: Callable[..., str | None] | None = None):
        if (fn is None) == (cache_key_fn is None):
            raise TypeError("CacheKeyFnPolicy takes one function: CacheKeyFnPolicy(fn) or "
                            "CacheKeyFnPolicy(cache_key_fn=fn) (Prefect's name)")
        self.fn = fn if fn is not None else cache_key_fn

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
        key = self.fn(task_ctx, inputs)
        if key is not None and not isinstance(key, str):
            raise CacheKeyError(f"cache_key_fn {_qualname(self.fn)} returned {key!r}; "
                                "it must return a str (the storage key) or None")
        return key

    def __repr__(self) -> str:
        return f"CacheKeyFnPolicy({_qualname(self.fn)})"


class _NoCache(CachePolicy):
    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
        return None

    def __repr__(self) -> str:
        return "NO_CACHE"


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """A `cache_key_fn` as Prefect's of the same name: the task's name and code with its
    arguments, so any change to either is a new key; None (the run is not cached) when an
    argument cannot be hashed, where the INPUTS policy raises CacheKeyError instead.

    The code is the task's fingerprint (stashflow.fingerprint), which also covers the
    functions it calls and its closure; the arguments are hashed canonically
    (stashflow.hashing), the parameters bound with their defaults applied.
    """
    task = context.task
    try:
        return hash_objects(_qualname(task.fn), code_fingerprint(task.fn), hash_inputs(arguments))
    except CacheKeyError:
        return None


CompoundCachePolicy = CompoundPolicy  # Prefect's name

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
    """A policy from an instance or a registered name ("inputs"; the constant's own
    spelling, "INPUTS", is the same name)."""
    if isinstance(spec, CachePolicy):
        return spec
    if isinstance(spec, str):
        policies = (registry or get_registry()).cache_policies
        try:
            return policies[spec] if spec in policies else policies[spec.lower()]
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
    "CacheKeyFnPolicy", "CachePolicy", "CompoundCachePolicy", "CompoundPolicy", "FlowParameters",
    "Inputs", "RunId", "TaskSource", "canonical_bytes", "code_fingerprint", "hash_inputs",
    "hash_objects", "resolve_cache_policy", "source_hash", "task_input_hash",
]
