"""The plugin manager, entry-point loading and the registries built from hooks.

Built-ins are modules listed in DEFAULT_PLUGINS, registered exactly like the
modules named by `stashflow` entry points. Hooks are called one implementation
at a time, so a plugin that raises, or registers a duplicate or a wrong kind of
object, is reported by name and the others keep working.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .exceptions import PluginWarning

ENTRY_POINT_GROUP = "stashflow"

DEFAULT_PLUGINS = (
    "stashflow.serializers._builtin",
    "stashflow.storage.memory",
    "stashflow.locking.selection",
    "stashflow.cache_policies",
    "stashflow.engine.runners",
)

# What to tell a user who names something whose plugin is not installed.
KNOWN_PROVIDERS = {
    "storage": {
        "local-file-system": "stashflow-local", "file": "stashflow-local",
        "s3-bucket": "stashflow-s3", "s3": "stashflow-s3",
        "gcs-bucket": "stashflow-gcs", "gs": "stashflow-gcs", "gcs": "stashflow-gcs",
        "azure-blob-storage": "stashflow-azure", "az": "stashflow-azure",
        "abfs": "stashflow-azure",
    },
    "serializer": {
        "compressed/json": "stashflow-compressed-json",
        "compressed/pickle": "stashflow-compressed-json",
        "parquet": "stashflow-arrow", "npy": "stashflow-arrow",
    },
    "task_runner": {"dask": "stashflow-dask"},
}


def install_hint(kind: str, name: str) -> str | None:
    dist = KNOWN_PROVIDERS.get(kind, {}).get(name)
    return f"install the {dist} plugin (pip install {dist})" if dist else None


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    entry_point: str | None
    registered: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    disabled: bool = False  # named in STASHFLOW_DISABLE_PLUGINS: listed, not loaded
    module: str | None = None  # the plugin's module, to attribute its warnings to
    whole_distribution: bool = False  # a distribution that declares no plugin at all

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def describe(self) -> str:
        if self.whole_distribution:
            return f"distribution {self.distribution} {self.version}"
        if self.entry_point:
            where = f"entry point {self.entry_point!r} of {self.distribution} {self.version}"
            return f"plugin {self.name!r} ({where})"
        if self.distribution == "stashflow":
            return f"built-in plugin {self.name!r} ({self.distribution} {self.version})"
        return f"plugin {self.name!r}"  # registered in-process, e.g. into an isolated manager


def new_plugin_manager() -> pluggy.PluginManager:
    """A bare plugin manager with stashflow's hook specs and nothing registered."""
    pm = pluggy.PluginManager("stashflow")
    pm.add_hookspecs(hookspecs)
    return pm


def isolated_plugin_manager(*plugins: Any, builtins: bool = True) -> pluggy.PluginManager:
    """A plugin manager for embedding: built-ins (optional) plus `plugins`, no entry points."""
    pm = new_plugin_manager()
    if builtins:
        for module_name in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(module_name), name=module_name)
    for plugin in plugins:
        # Name a plugin object by its class, so that warnings say which one it is.
        base = name = getattr(plugin, "__name__", None) or type(plugin).__qualname__
        count = 1
        while pm.has_plugin(name):
            count += 1
            name = f"{base}#{count}"
        pm.register(plugin, name=name)
    return pm


def _near_our_group(group: str) -> bool:
    """A group name that looks like a misspelling of ours ("stashflow.plugins", "stashflw")."""
    import difflib

    lowered = group.lower()
    if lowered == ENTRY_POINT_GROUP:
        return False
    return (lowered.startswith(ENTRY_POINT_GROUP) or lowered.endswith(ENTRY_POINT_GROUP)
            or difflib.SequenceMatcher(None, lowered, ENTRY_POINT_GROUP).ratio() >= 0.8)


def _normalize(dist: str) -> str:
    """A distribution name as PEP 503 compares them ("Stashflow_S3" == "stashflow-s3")."""
    import re

    return re.sub(r"[-_.]+", "-", dist).lower()


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def tracing() -> bool:
    return os.environ.get("STASHFLOW_TRACE_PLUGINS", "") not in ("", "0")


def _where(info: PluginInfo, exc: BaseException | None) -> tuple[str, int]:
    """The file and line a warning about `info` points at: where the plugin failed, else
    its module. Never stashflow's loader: that is not where the author has to look."""
    if exc is not None:
        import traceback

        frames = traceback.extract_tb(exc.__traceback__)
        ours = os.path.dirname(os.path.abspath(__file__)) + os.sep
        for frame in reversed(frames):
            if not frame.filename.startswith((ours, "<frozen")) and "importlib" not in frame.filename:
                return frame.filename, frame.lineno or 0
    module = sys.modules.get(info.module or "")
    filename = getattr(module, "__file__", None)
    if filename:
        return filename, 1
    if info.whole_distribution:
        return f"<distribution {info.distribution} {info.version}>", 0
    return f"<{info.distribution} {info.entry_point or info.name}>", 0


def warn(info: PluginInfo, message: str, exc: BaseException | None = None) -> None:
    info.errors.append(message)
    filename, lineno = _where(info, exc)
    if exc is not None and tracing():
        import traceback

        print(f"stashflow: {info.describe()} failed at {filename}:{lineno}:", file=sys.stderr)
        traceback.print_exception(exc, file=sys.stderr)
    # Attributed to the plugin, and shown on every load (no once-per-location registry);
    # the user's own filters decide.
    warnings.warn_explicit(f"stashflow: {info.describe()}: {message}", PluginWarning, filename,
                           lineno, module=info.module or info.name, registry=None)


def _register_checked(pm: pluggy.PluginManager, plugin: Any, info: PluginInfo) -> bool:
    try:
        pm.register(plugin, name=info.name)
    except pluggy.PluginValidationError as exc:
        warn(info, f"has a hook implementation with a wrong signature: {exc}")
        return False
    except ValueError as exc:  # already registered under that name
        warn(info, f"could not be registered: {exc}")
        return False
    # Hooks the plugin implements that stashflow does not specify: warn and drop it,
    # rather than calling into something written for another version.
    unknown = [
        name for name in dir(plugin)
        if not name.startswith("_") and not hasattr(hookspecs, name)
        and pm.parse_hookimpl_opts(plugin, name) is not None
    ]
    if unknown:
        pm.unregister(plugin)
        warn(info, f"implements hooks stashflow does not have: {', '.join(unknown)}; not loaded")
        return False
    if not pm.get_hookcallers(plugin):
        warn(info, "implements no stashflow hooks (does its entry point name the right "
                    "module, and are its functions marked with @stashflow.hookimpl?)")
    return True


class PluginLoader:
    """Registers built-ins and entry-point plugins into `pm`, recording what happened."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self.infos: dict[str, PluginInfo] = {}

    def load_builtins(self, disabled: frozenset[str]) -> None:
        version = _version("stashflow")
        for module_name in DEFAULT_PLUGINS:
            info = PluginInfo(module_name, "stashflow", version, None,
                              disabled=module_name in disabled, module=module_name)
            self.infos[module_name] = info
            if info.disabled:
                continue
            _register_checked(self.pm, importlib.import_module(module_name), info)

    def load_entry_points(self, disabled: frozenset[str]) -> None:
        from importlib.metadata import entry_points

        disabled_dists = {_normalize(name) for name in disabled}
        seen: dict[str, str] = {}  # entry-point name -> the distribution that took it first
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "unknown"
            # Two distributions may choose the same entry-point name: the later one is
            # registered as "dist:name". The same distribution twice on sys.path is skipped.
            name = ep.name if seen.setdefault(ep.name, dist) == dist else f"{dist}:{ep.name}"
            if name in self.infos:
                continue
            info = PluginInfo(name, dist, ep.dist.version if ep.dist else "unknown",
                              f"{ep.name} = {ep.value}",
                              disabled=ep.name in disabled or _normalize(dist) in disabled_dists,
                              module=ep.value.partition(":")[0].strip())
            self.infos[name] = info
            if info.disabled:
                continue
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:
                warn(info, f"error importing {ep.value!r}: {type(exc).__name__}: {exc}", exc)
                continue
            _register_checked(self.pm, plugin, info)
        self._check_distributions(disabled_dists)

    def _check_distributions(self, disabled: set[str]) -> None:
        """Warn about distributions that look like stashflow plugins but declare no entry
        point in the `stashflow` group: a typo in the group's name, or none at all."""
        from importlib.metadata import distributions

        reported: set[str] = set()
        for dist in distributions():
            # The normalized name comes from the .dist-info folder, without reading METADATA.
            name = getattr(dist, "_normalized_name", None) or _normalize(dist.name or "")
            name = _normalize(name)
            if name in reported or name in disabled:
                continue
            groups = {ep.group for ep in dist.entry_points}
            if ENTRY_POINT_GROUP in groups:
                continue
            close = sorted(g for g in groups if _near_our_group(g))
            if close:
                why = (f"declares entry points in group {close[0]!r}, not {ENTRY_POINT_GROUP!r}: "
                       "rename the group to load them")
            elif name.startswith(f"{ENTRY_POINT_GROUP}-"):
                why = (f"declares no entry point in the {ENTRY_POINT_GROUP!r} group, so nothing of "
                       f"it is loaded: add [project.entry-points.{ENTRY_POINT_GROUP}] "
                       "NAME = \"module\" to its pyproject.toml")
            else:
                continue
            reported.add(name)
            info = PluginInfo(name, name, dist.version or "unknown", None,
                              module=name.replace("-", "_"), whole_distribution=True)
            self.infos[f"{name} (distribution)"] = info
            warn(info, why)

    def info_for(self, plugin_name: str) -> PluginInfo:
        if plugin_name not in self.infos:
            self.infos[plugin_name] = PluginInfo(plugin_name, "unknown", "", None)
        return self.infos[plugin_name]


def find_attribute(name: str, disabled: frozenset[str] = frozenset()) -> Any:
    """`name` as defined by an enabled `stashflow` entry point's module (None: none does).

    For Prefect's import paths (`from stashflow.serializers import CompressedSerializer`):
    the plugins already registered are looked at first, then the entry points, which
    are imported as the registry would import them. `name` comes from code, never from
    stored data.
    """
    for plugin in pm.get_plugins():
        found = getattr(plugin, name, None)
        if found is not None:
            return found
    from importlib.metadata import entry_points  # lazy: 10 ms, only for a name not found above

    disabled_dists = {_normalize(d) for d in disabled}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = _normalize(ep.dist.name) if ep.dist is not None else ""
        if ep.name in disabled or dist in disabled_dists:
            continue
        try:
            found = getattr(ep.load(), name, None)
        except Exception:  # reported by the registry's own load; nothing found here
            continue
        if found is not None:
            return found
    return None


pm = new_plugin_manager()  # the process-wide manager; plugins are loaded on first use


def reset() -> None:
    """Forget every loaded plugin: a fresh process-wide manager, so the next registry
    loads them again (tests, and after installing a plugin in-process)."""
    global pm
    pm = new_plugin_manager()
