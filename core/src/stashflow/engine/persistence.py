"""Who persists, where, and how: flow and task options resolved against settings.

Resolution happens once per (definition, enclosing flow, settings) and is
cached, so the per-call path only looks up a ready `TaskConfig`. The settings
"stamp" is what the cached resolutions depend on: the relevant environment
variables, the profile file's mtime and the plugin registry in use.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from .. import plugins, settings
from ..cache_policies import DEFAULT, NO_CACHE, CacheKeyFnPolicy, CachePolicy, resolve_cache_policy
from ..results import ResultStore
from .retries import delays_for
from .templates import KeyTemplate

# Every setting can change how a task resolves: the stamp watches all of them.
_ENV = ("STASHFLOW_HOME", settings.PROFILE_ENV,
        *(name for name in settings.SETTINGS if name != "STASHFLOW_HOME"), *settings.ALIASES)
_CACHE_LIMIT = 64


_profile_paths: dict[tuple, str] = {}


# os.environ.get encodes the name and wraps the value on every call; the stamp only
# compares values, so it reads the encoded mapping behind os.environ directly: 0.45 us
# for 14 names against 13 us through os.environ.get (python -m timeit, 2026-12-04), on a
# persisted task's ~56 us.
_env_data = getattr(os.environ, "_data", None)
if _env_data is not None:
    _ENV_KEYS = tuple(map(os.environ.encodekey, _ENV))
    _HOME_KEY = os.environ.encodekey("HOME")
else:  # pragma: no cover - not CPython's os.environ
    _env_data, _ENV_KEYS, _HOME_KEY = os.environ, _ENV, "HOME"


def settings_stamp() -> tuple:
    """A value that changes whenever a setting the engine resolved could have changed."""
    get = _env_data.get
    values = tuple(map(get, _ENV_KEYS))
    where = (values[0], get(_HOME_KEY))
    path = _profile_paths.get(where)
    if path is None:
        path = _profile_paths[where] = str(settings.profiles_path())
    try:
        st = os.stat(path)
        profile: tuple | None = (st.st_mtime_ns, st.st_size, st.st_ino)
    except OSError:
        profile = None
    return values, profile, plugins.pm  # a new manager (plugins.reset()) is a new registry


def _spec_key(spec: Any) -> Any:
    if spec is None or isinstance(spec, (str, os.PathLike)):
        return spec
    return ("instance", id(spec))


_stores: dict[tuple, tuple[Any, Any, Any]] = {}


def get_store(storage: Any, serializer: Any, stamp: tuple) -> Any:
    """A ResultStore for (storage spec, serializer spec), shared while settings are unchanged."""
    cache_key = (stamp, _spec_key(storage), _spec_key(serializer))
    found = _stores.get(cache_key)
    if found is None:

        if len(_stores) >= _CACHE_LIMIT:
            _stores.clear()
        store = ResultStore(storage, serializer)
        store.check_round_trip()  # a task must not write what it would refuse to read
        # Keep the specs referenced so that an id() in the cache key is never reused.
        found = _stores[cache_key] = (store, storage, serializer)
    return found[0]


class FlowConfig:
    """A flow's resolved persistence; tasks inherit storage and serializer from it.

    Compared and hashed by identity: it is the cache key of its tasks' configs.
    """

    __slots__ = ("in_memory", "persist", "serializer", "stamp", "storage")

    def __init__(self, persist: bool, storage: Any, serializer: Any, in_memory: bool,
                 stamp: tuple):
        self.persist = persist
        self.storage = storage
        self.serializer = serializer
        self.in_memory = in_memory
        self.stamp = stamp

    def store(self) -> Any:
        return get_store(self.storage, self.serializer, self.stamp)

    def __reduce__(self) -> tuple:
        # Rebuilt against the settings of the process that unpickles it.
        return _flow_config, (self.persist, self.storage, self.serializer, self.in_memory)


def _flow_config(persist: bool, storage: Any, serializer: Any, in_memory: bool) -> FlowConfig:
    return FlowConfig(persist, storage, serializer, in_memory, settings_stamp())


def persist_by_default() -> bool:
    """STASHFLOW_RESULTS_PERSIST_BY_DEFAULT, or a default result storage block is set (as in
    Prefect: naming where results go is asking for them to be kept)."""
    return bool(settings.get("STASHFLOW_RESULTS_PERSIST_BY_DEFAULT")
                or settings.get("STASHFLOW_DEFAULT_RESULT_STORAGE_BLOCK"))


def resolve_flow_config(flow: Any, parent: FlowConfig | None, stamp: tuple) -> FlowConfig:
    options = flow.options
    persist = options.persist_result
    if persist is None:
        if options.result_storage is not None or options.result_serializer is not None:
            persist = True
        elif parent is not None:
            persist = parent.persist
        else:
            persist = persist_by_default()
    storage = options.result_storage if options.result_storage is not None else (
        parent.storage if parent is not None else None)
    serializer = options.result_serializer if options.result_serializer is not None else (
        parent.serializer if parent is not None else None)
    return FlowConfig(bool(persist), storage, serializer, options.cache_result_in_memory, stamp)


class TaskConfig:
    """A task's options resolved against the settings and its flow, for its runs."""

    __slots__ = ("delays", "expiration", "in_memory", "isolation_level", "jitter", "lock_manager",
                 "lookup", "persist", "policy", "refresh", "retries", "store", "template")

    def __init__(self, persist: bool, store: Any, policy: CachePolicy | None,
                 template: KeyTemplate | None, expiration: timedelta | None, refresh: bool,
                 in_memory: bool, isolation_level: str | None, lock_manager: Any,
                 retries: int = 0, delays: tuple[float, ...] = (), jitter: float | None = None,
                 lookup: bool = True):
        self.persist = persist
        self.store = store
        self.policy = policy
        self.template = template
        self.expiration = expiration
        self.refresh = refresh
        self.in_memory = in_memory
        self.isolation_level = isolation_level
        self.lock_manager = lock_manager
        self.retries = retries
        self.delays = delays
        self.jitter = jitter
        self.lookup = lookup  # False: STASHFLOW_TASKS_DISABLE_CACHING (run, never read a record)


def _policy_named(options: Any) -> Any:
    """The policy `cache_policy` names: NOT_GIVEN, NO_CACHE for None, else as given."""
    policy = options.cache_policy
    return NO_CACHE if policy is None else policy


def task_implies_persistence(options: Any) -> bool:
    """Options that only make sense with a record (as in Prefect)."""
    policy = _policy_named(options)
    return (options.result_storage is not None or options.result_serializer is not None
            or options.result_storage_key is not None or options.cache_key_fn is not None
            or (options.cache_policy_given and policy is not NO_CACHE and policy != "no_cache"))


def declared_persistence(options: Any) -> bool | None:
    """`persist_result` as Prefect reports it: as given, True when implied, else None."""
    if options.persist_result is not None:
        return options.persist_result
    return True if task_implies_persistence(options) else None


def declared_cache_policy(options: Any) -> Any:
    """The cache policy a task runs with, as Prefect reports it (settings read now)."""
    if options.persist_result is False or settings.get("STASHFLOW_TASKS_DISABLE_CACHING"):
        return NO_CACHE
    if options.cache_key_fn is not None:
        return CacheKeyFnPolicy(options.cache_key_fn)
    if not options.cache_policy_given:
        return NO_CACHE if settings.get("STASHFLOW_TASKS_DEFAULT_NO_CACHE") else DEFAULT
    return _policy_named(options)


def resolve_task_config(task: Any, flow_config: FlowConfig | None, stamp: tuple) -> TaskConfig:
    options = task.options
    retries = options.retries
    if retries is None:
        retries = settings.get("STASHFLOW_TASKS_DEFAULT_RETRIES")
    delay_spec = options.retry_delay_seconds
    if delay_spec is None:
        delay_spec = settings.get("STASHFLOW_TASKS_DEFAULT_RETRY_DELAY_SECONDS")
    retry = {"retries": retries, "delays": delays_for(delay_spec, retries),
             "jitter": options.retry_jitter_factor}

    persist = declared_persistence(options)
    if persist is None:
        persist = flow_config.persist if flow_config is not None else persist_by_default()
    refresh = options.refresh_cache
    if refresh is None:
        refresh = settings.get("STASHFLOW_TASKS_REFRESH_CACHE")
    if not persist:
        return TaskConfig(False, None, None, None, None, bool(refresh), True, None, None, **retry)

    named = _policy_named(options)
    if options.cache_key_fn is not None:
        policy: CachePolicy = CacheKeyFnPolicy(options.cache_key_fn)
        if isinstance(named, (CachePolicy, str)):
            explicit = resolve_cache_policy(named)
            policy = policy.configure(isolation_level=explicit.isolation_level,
                                      lock_manager=explicit.lock_manager,
                                      key_storage=explicit.key_storage)
    elif not options.cache_policy_given:
        policy = resolve_cache_policy(declared_cache_policy(options))
    else:
        policy = resolve_cache_policy(named)

    storage = options.result_storage
    if storage is None:
        storage = policy.key_storage
    if storage is None and flow_config is not None:
        storage = flow_config.storage
    serializer = options.result_serializer
    if serializer is None and flow_config is not None:
        serializer = flow_config.serializer
    return TaskConfig(
        persist=True,
        store=get_store(storage, serializer, stamp),
        policy=policy,
        template=task._template,
        expiration=options.cache_expiration,
        refresh=bool(refresh),
        in_memory=options.cache_result_in_memory,
        isolation_level=policy.isolation_level,
        lock_manager=policy.lock_manager,
        lookup=not settings.get("STASHFLOW_TASKS_DISABLE_CACHING"),
        **retry,
    )
