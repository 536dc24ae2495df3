"""Choosing a lock manager: by name from the registry, or the one a backend asks for."""

from __future__ import annotations

from typing import Any

from ..exceptions import LockManagerNotFound
from ..hookspecs import hookimpl
from ..registry import get_registry
from .base import LockManager
from .file import FileLockManager
from .memory import MemoryLockManager
from .storage import StorageLockManager

BUILTIN_LOCK_MANAGERS: dict[str, type[LockManager]] = {
    "memory": MemoryLockManager,
    "file": FileLockManager,
    "storage": StorageLockManager,
}


def default_lock_manager_name(storage: Any) -> str:
    """The lock manager the backend asks for (`StorageBackend.default_lock_manager`)."""
    return getattr(storage, "default_lock_manager", None) or "storage"


def _parts(store: Any) -> tuple[Any, Any]:
    """(storage backend, registry) of a ResultStore or a bare StorageBackend."""
    storage = getattr(store, "storage", store)
    registry = getattr(store, "registry", None)
    if registry is None:

        registry = get_registry()
    return storage, registry


def default_lock_manager(store: Any) -> LockManager:
    """The lock manager that fits a ResultStore's (or a backend's) storage."""
    storage, registry = _parts(store)
    name = default_lock_manager_name(storage)
    factory = registry.lock_managers.get(name, BUILTIN_LOCK_MANAGERS[name])
    return factory(storage)


def resolve_lock_manager(spec: Any, store: Any) -> LockManager:
    """A LockManager from a registered name, an instance, or None: the store's own
    (`ResultStore(lock_manager=...)`), else the default for its storage."""
    if spec is None and getattr(store, "storage", store) is not store:
        spec = getattr(store, "lock_manager", None)  # a ResultStore's, not a backend's field
    if spec is None:
        return default_lock_manager(store)
    if isinstance(spec, LockManager):
        return spec
    if isinstance(spec, str):
        storage, registry = _parts(store)
        factory = registry.lock_managers.get(spec)
        if factory is None:
            raise LockManagerNotFound(spec, list(registry.lock_managers))
        return factory(storage)
    raise TypeError(f"lock_manager must be None, a registered name or a LockManager, not {spec!r}")


@hookimpl
def register_lock_managers(register):
    for name, cls in BUILTIN_LOCK_MANAGERS.items():
        register(name, cls)
