"""The registry: what the installed plugins registered, and turning names into objects.

`get_registry()` loads the process-wide plugins once (stashflow.plugins finds and
registers them) and collects what their hooks register, checking each thing as it
is registered. Above storage, serializers and blocks, it is also where a name
becomes an object: a storage spec (URL, slug, path) becomes a backend
(`resolve_storage`), a serializer name a serializer (`resolve_serializer`), a
block slug a block (`load_block`). Those lower modules know no registry.
"""

from __future__ import annotations

import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pluggy

from . import plugins, settings
from .blocks import Block, build_block, read_block
from .exceptions import PluginError, PluginWarning, SerializerNotFound, StorageNotFound
from .plugins import PluginInfo, PluginLoader, install_hint, tracing, warn
from .serializers import Serializer
from .storage import StorageBackend


class Registry:
    """Names -> classes and objects, built by calling every plugin's hooks once."""

    def __init__(self, pm: pluggy.PluginManager, loader: PluginLoader | None = None):
        self.pm = pm
        self.loader = loader or PluginLoader(pm)
        self.storage_types: dict[str, type] = {}
        self.block_types: dict[str, type] = {}  # storage types and the other blocks
        self.url_schemes: dict[str, type] = {}
        self.serializers: dict[str, type] = {}
        self.cache_policies: dict[str, Any] = {}
        self.lock_managers: dict[str, Any] = {}
        self.task_runners: dict[str, type] = {}
        self._owner: dict[tuple[str, str], PluginInfo] = {}
        self._collect()

    @property
    def plugins(self) -> list[PluginInfo]:
        return list(self.loader.infos.values())

    def owner(self, kind: str, name: str) -> str | None:
        """The name of the plugin that registered `name` as a `kind`."""
        info = self._owner.get((kind, name))
        return None if info is None else info.name

    def _claim(self, kind: str, name: str, table: dict, value: Any, info: PluginInfo) -> bool:
        previous = self._owner.get((kind, name))
        if previous is not None:
            warn(info, f"registers {kind} {name!r}, already registered by "
                        f"{previous.describe()}; the first registration is kept")
            return False
        self._owner[(kind, name)] = info
        table[name] = value
        info.registered.setdefault(kind, []).append(name)
        return True

    def _collect(self) -> None:
        def storage(info: PluginInfo, cls: Any) -> None:
            if not (isinstance(cls, type) and issubclass(cls, StorageBackend)):
                raise PluginError(f"register_storage_types: {cls!r} is not a StorageBackend subclass")
            slug = getattr(cls, "type_slug", None)
            if not isinstance(slug, str) or not slug:
                raise PluginError(f"register_storage_types: {cls.__name__} has no type_slug")
            if self._claim("storage", slug, self.storage_types, cls, info):
                self.block_types[slug] = cls
                for scheme in cls.url_schemes:
                    self._claim("scheme", scheme, self.url_schemes, cls, info)

        def block(info: PluginInfo, cls: Any) -> None:
            if not (isinstance(cls, type) and issubclass(cls, Block)):
                raise PluginError(f"register_block_types: {cls!r} is not a Block subclass")
            slug = getattr(cls, "type_slug", None)
            if not isinstance(slug, str) or not slug:
                raise PluginError(f"register_block_types: {cls.__name__} has no type_slug")
            first = self._owner.get(("storage", slug))
            if first is not None:  # a storage type of that name came first
                warn(info, f"registers block type {slug!r}, already registered by "
                           f"{first.describe()}; the first registration is kept")
                return
            self._claim("block", slug, self.block_types, cls, info)

        def serializer(info: PluginInfo, cls: Any) -> None:
            if not (isinstance(cls, type) and issubclass(cls, Serializer)):
                raise PluginError(f"register_serializers: {cls!r} is not a Serializer subclass")
            name = getattr(cls, "type", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"register_serializers: {cls.__name__} has no type name")
            self._claim("serializer", name, self.serializers, cls, info)

        def named(kind: str, table: dict):
            def register(info: PluginInfo, name: Any, value: Any) -> None:
                if not isinstance(name, str) or not name:
                    raise PluginError(f"{kind} names must be non-empty strings, not {name!r}")
                self._claim(kind, name, table, value, info)
            return register

        self._call("register_storage_types", storage)
        self._call("register_block_types", block)
        self._call("register_serializers", serializer)
        self._call("register_cache_policies", named("cache_policy", self.cache_policies))
        self._call("register_lock_managers", named("lock_manager", self.lock_managers))
        self._call("register_task_runners", named("task_runner", self.task_runners))

    def _call(self, hook_name: str, handler) -> None:
        trace = tracing()
        hook = getattr(self.pm.hook, hook_name)
        # In registration order (built-ins first), whatever tryfirst/trylast say:
        # the first registration of a name is the one that stays.
        order = {name: i for i, (name, _) in enumerate(self.pm.list_name_plugin())}
        impls = sorted(hook.get_hookimpls(), key=lambda impl: order.get(impl.plugin_name, 0))
        for impl in impls:
            info = self.loader.info_for(impl.plugin_name)

            def register(*args: Any, _info: PluginInfo = info) -> None:
                if trace:
                    shown = ", ".join(getattr(a, "__name__", repr(a)) for a in args)
                    print(f"stashflow: {hook_name}: {_info.name} registers {shown}",
                          file=sys.stderr)
                try:
                    handler(_info, *args)
                except PluginError as exc:
                    warn(_info, str(exc))
                except TypeError as exc:
                    warn(_info, f"called register wrongly in {hook_name}: {exc}")

            if trace:
                print(f"stashflow: calling {hook_name} of {info.name}", file=sys.stderr)
            try:
                impl.function(register)
            except Exception as exc:
                warn(info, f"{hook_name} raised {type(exc).__name__}: {exc}", exc)


_lock = threading.RLock()
_registry: Registry | None = None
# id(manager) -> (manager, the plugins it had, their registry): rebuilt when they change
_isolated: dict[int, tuple[pluggy.PluginManager, tuple, Registry]] = {}
_loading: PluginLoader | None = None  # set while the process-wide registry loads (under _lock)


def get_registry(plugin_manager: pluggy.PluginManager | None = None) -> Registry:
    """The registry of `plugin_manager`, or the process-wide one (loading plugins once)."""
    global _registry, _loading
    pm = plugins.pm
    if plugin_manager is not None and plugin_manager is not pm:
        with _lock:
            registered = tuple(plugin_manager.list_name_plugin())
            entry = _isolated.get(id(plugin_manager))
            if entry is None or entry[0] is not plugin_manager or entry[1] != registered:
                entry = (plugin_manager, registered, Registry(plugin_manager))
                _isolated[id(plugin_manager)] = entry
            return entry[2]
    if _registry is None or _registry.pm is not pm:  # none yet, or plugins.reset() since
        with _lock:
            if _loading is not None:
                # A plugin module uses stashflow while it is being imported: it sees what
                # is registered so far, and the load in progress goes on unchanged.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", PluginWarning)  # the real load reports
                    return Registry(pm, PluginLoader(pm))
            if _registry is None or _registry.pm is not pm:
                _isolated.clear()
                disabled = settings.get("STASHFLOW_DISABLE_PLUGINS")
                loader = _loading = PluginLoader(pm)
                try:
                    loader.load_builtins(disabled)
                    loader.load_entry_points(disabled)
                    _registry = Registry(pm, loader)
                finally:
                    _loading = None
    return _registry


def reset() -> None:
    """Forget every loaded plugin (tests, and after installing a plugin in-process)."""
    global _registry
    with _lock:
        _registry = None
        _isolated.clear()
        plugins.reset()


# -- names to objects --------------------------------------------------------------------


def default_storage(registry=None) -> StorageBackend:
    """STASHFLOW_DEFAULT_RESULT_STORAGE_BLOCK if set, else local disk at STASHFLOW_LOCAL_STORAGE_PATH."""
    slug = settings.get("STASHFLOW_DEFAULT_RESULT_STORAGE_BLOCK")
    if slug:
        return resolve_storage(slug, registry)
    return _local(settings.get("STASHFLOW_LOCAL_STORAGE_PATH"), registry)


def _local(path: Path, registry) -> StorageBackend:
    registry = registry if registry is not None else get_registry()
    cls = registry.url_schemes.get("file")
    if cls is None:
        raise StorageNotFound(
            "local storage is not available: install the stashflow-local plugin "
            "(pip install stashflow-local), or check STASHFLOW_DISABLE_PLUGINS"
        )
    return cls(basepath=str(path))


def resolve_storage(spec: Any, registry=None) -> StorageBackend:
    """A backend from an instance, a URL, a block slug ("type/name") or a local path."""
    if isinstance(spec, StorageBackend):
        return spec
    if spec is None:
        return default_storage(registry)
    if isinstance(spec, Block):
        raise TypeError(f"{spec.type_slug} is a block, not storage: give it to a storage "
                        f"block that takes it (result storage must be a StorageBackend, a URL, "
                        f"a block slug or a Path, not {spec!r})")
    if isinstance(spec, Path):
        return _local(spec.expanduser(), registry)
    if not isinstance(spec, str) or not spec:
        raise TypeError(
            f"result storage must be a StorageBackend, a URL, a block slug or a Path, not {spec!r}"
        )
    registry = registry if registry is not None else get_registry()
    if "://" in spec:
        scheme = spec.split("://", 1)[0].lower()
        cls = registry.url_schemes.get(scheme)
        if cls is None:
            hint = install_hint("storage", scheme) or f"known schemes: {', '.join(registry.url_schemes)}"
            raise StorageNotFound(f"no storage is registered for URL scheme {scheme!r} ({spec!r}): {hint}")
        return cls.from_url(spec)
    if spec.startswith(("/", "~", "./", "../")):
        return _local(Path(spec).expanduser(), registry)
    type_slug = spec.split("/", 1)[0]
    if type_slug in registry.block_types and type_slug not in registry.storage_types:
        raise StorageNotFound(f"{spec!r} is a {type_slug} block, not storage: give it to a "
                              "storage block that takes it")
    if "/" in spec and (type_slug in registry.storage_types or install_hint("storage", type_slug)):
        return load_block(spec, registry=registry)
    cls = registry.storage_types.get(spec)
    if cls is not None:  # a bare type slug: that type with its default configuration
        try:
            return cls()
        except TypeError as exc:
            raise StorageNotFound(
                f"storage type {spec!r} needs configuration ({exc}): pass an instance, a URL, "
                f"or the slug of a saved block ('{spec}/NAME')"
            ) from None
    raise StorageNotFound(
        f"cannot tell what storage {spec!r} is: give a URL (file:///path, s3://bucket/prefix), "
        f"a block slug 'type/name' (types: {', '.join(registry.storage_types)}), or a pathlib.Path"
    )


def resolve_serializer(spec: str | Serializer | None, registry=None) -> Serializer:
    """A Serializer instance from a registered name, an instance, or None (the default)."""
    if isinstance(spec, Serializer):
        return spec
    if spec is None:
        spec = settings.get("STASHFLOW_RESULTS_DEFAULT_SERIALIZER")
    if not isinstance(spec, str):
        raise TypeError(
            f"result_serializer must be a registered name or a Serializer instance, not {spec!r}"
        )
    registry = registry if registry is not None else get_registry()
    try:
        cls = registry.serializers[spec]
    except KeyError:
        raise SerializerNotFound(spec, list(registry.serializers),
                                 install_hint("serializer", spec)) from None
    return cls()


def load_block(slug: str, registry: Registry | None = None) -> Block:
    """The block saved as `slug` ("s3-bucket/my-block"), of its installed type."""
    type_slug, fields = read_block(slug)
    registry = registry if registry is not None else get_registry()
    cls = registry.block_types.get(type_slug)
    if cls is None:
        hint = install_hint("storage", type_slug) or "install the plugin that provides it"
        raise StorageNotFound(f"block {slug!r} has type {type_slug!r}, which is not installed: {hint}")
    return build_block(cls, fields)


__all__ = ["Registry", "default_storage", "get_registry", "load_block", "reset",
           "resolve_serializer", "resolve_storage"]
