"""`ResultStore`: write, read, list and delete result records on any storage.

This is the embedding API: no flow or task is needed. The engine uses it too.
For async code, `aread`, `awrite`, `aexists`, ... run those methods in a worker
thread; the store also locks its keys with its lock manager (`acquire_lock`,
`release_lock`, ...: Prefect's names).

Why one long module: it is one class, and its sync, async and lock methods are one
API that users read in one place; the record format, the storage and the locks it
uses live in their own modules.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import maintenance, settings
from . import plugins as _plugins
from .durations import as_expiration
from .exceptions import (
    LockManagerNotFound,
    ResultCorrupted,
    ResultNotFound,
    SerializerNotFound,
    StorageEntryRefused,
    UntrustedSerializer,
)
from .keys import validate_key
from .plugins import install_hint
from .records import RecordMetadata, ResultRecord, read_header, read_record, write_record
from .registry import get_registry, resolve_serializer, resolve_storage
from .serializers import Serializer
from .storage import StorageBackend, record_keys

if TYPE_CHECKING:
    from .maintenance import GcReport, StoredRecord

_UNSET: Any = object()

# The store a keyed transaction uses when it is given none and has no parent: while a
# flow runs, the engine points this at a zero-argument callable giving the flow's store.
default_store: ContextVar[Callable[[], Any] | None] = ContextVar("stashflow_default_store",
                                                                default=None)


class ResultExpired(ResultNotFound):
    """The record exists but its expiration has passed: it counts as absent."""


# A random name per thread and per asyncio task, so that a default holder is never
# confused with that of an earlier thread or task that had the same id.
_thread_names = threading.local()
_task_names: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_task_names_lock = threading.Lock()

# What a lock manager must have (stashflow.locking.LockManager has it all).
_LOCK_MANAGER_METHODS = ("acquire", "release", "renew", "is_locked", "is_lock_holder",
                         "acquire_lock", "release_lock", "aacquire_lock", "await_for_lock")


def default_holder() -> str:
    """The lock holder of the caller: host:pid:thread id:thread name:thread's random name,
    plus `:task-<random>` inside an asyncio task. The same all along one thread (or one
    task), different in any other thread, task or process."""
    thread = threading.current_thread()
    name = getattr(_thread_names, "name", None)
    if name is None:
        name = _thread_names.name = os.urandom(6).hex()
    host = os.uname().nodename if hasattr(os, "uname") else "host"
    holder = f"{host}:{os.getpid()}:{threading.get_ident()}:{thread.name}:{name}"
    task = None
    aio = sys.modules.get("asyncio")  # not imported: no task can be running
    if aio is not None:
        with contextlib.suppress(RuntimeError):  # no event loop running in this thread
            task = aio.current_task()
    if task is not None:
        with _task_names_lock:
            task_name = _task_names.get(task)
            if task_name is None:
                task_name = _task_names[task] = os.urandom(6).hex()
        holder += f":task-{task_name}"
    return holder


async def _in_worker_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` in a worker thread (asyncio.to_thread: the context goes along)."""
    import asyncio  # here, not at the top: `import stashflow.results` stays light

    return await asyncio.to_thread(fn, *args)


def _acquire_timeout(method: str, acquire_timeout: float | None, timeout: Any) -> float | None:
    """`acquire_timeout`, or `timeout` (the name Prefect's ResultStore gives it)."""
    if timeout is _UNSET:
        return acquire_timeout
    if acquire_timeout is not None:
        raise TypeError(f"{method}() got both acquire_timeout and timeout: "
                        "timeout is another name for acquire_timeout, give one")
    return timeout


class ResultStore:
    """Records of values on one storage backend.

    `storage`: a StorageBackend, URL, block slug or Path (default: the configured
    default storage). `serializer`: name or instance used to write (default:
    STASHFLOW_RESULTS_DEFAULT_SERIALIZER); reading uses whatever installed
    serializer a record names, limited to `trusted_serializers` when given.
    `plugins`: a pluggy PluginManager to take names from instead of the
    process-wide one. `trusted_serializers`: the serializers records may be
    decoded with (default: STASHFLOW_RESULTS_TRUSTED_SERIALIZERS; None: every
    installed one). `signing_key`: defaults to STASHFLOW_RESULTS_SIGNING_KEY.
    `result_storage`: Prefect's name for `storage` (give one of them).
    `lock_manager`: what locks this store's keys, for its lock methods and for
    SERIALIZABLE transactions on it that name none: a LockManager, a registered name,
    or None for the one its storage asks for (made on first use).
    """

    def __init__(self, storage: Any = _UNSET, serializer: str | Serializer | None = None,
                 plugins: Any = None, *, result_storage: Any = _UNSET, lock_manager: Any = None,
                 trusted_serializers: Iterable[str] | None = _UNSET,
                 signing_key: str | bytes | None = _UNSET):

        if result_storage is not _UNSET:
            if storage is not _UNSET:
                raise TypeError("ResultStore() got both storage and result_storage: "
                                "result_storage is another name for storage, give one")
            storage = result_storage
        self._isolated_plugins = plugins is not None and plugins is not _plugins.pm
        self.registry = get_registry(plugins)
        self.storage: StorageBackend = resolve_storage(None if storage is _UNSET else storage,
                                                       self.registry)
        self.lock_manager = lock_manager
        self.serializer: Serializer | None = (
            None if serializer is None else resolve_serializer(serializer, self.registry)
        )

        if trusted_serializers is _UNSET:
            trusted_serializers = settings.get("STASHFLOW_RESULTS_TRUSTED_SERIALIZERS")
        if isinstance(trusted_serializers, str):  # one name, not its letters
            trusted_serializers = [trusted_serializers]
        self.trusted_serializers = (
            None if trusted_serializers is None else frozenset(trusted_serializers)
        )
        if signing_key is _UNSET:
            signing_key = settings.get("STASHFLOW_RESULTS_SIGNING_KEY")
        if isinstance(signing_key, str):
            signing_key = signing_key.encode("utf-8")
        self._signing_key: bytes | None = signing_key or None  # an empty key signs nothing
        self._write_serializer: Serializer | None = self.serializer

    def __repr__(self) -> str:
        return f"ResultStore(storage={self.storage!r}, serializer={self.serializer!r})"

    def __getstate__(self) -> dict[str, Any]:
        # The registry holds plugin modules: it is rebuilt on the other side, from
        # that process's installed plugins (process pools, Dask workers).
        if self._isolated_plugins:
            raise TypeError(
                "a ResultStore built with its own plugin manager cannot be pickled: "
                "build it again in the other process"
            )
        state = dict(self.__dict__)
        del state["registry"]
        state["_locks_in_use"] = None  # made again on first use, from `lock_manager`
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:

        self.__dict__.update({"_lock_manager": None, "_locks_in_use": None, **state})
        self.registry = get_registry()

    @property
    def lock_manager(self) -> Any:
        """The lock manager given (a LockManager or a registered name), or None: the
        storage's own (`stashflow.locking.resolve_lock_manager(None, store)` shows it)."""
        return self._lock_manager

    @lock_manager.setter
    def lock_manager(self, value: Any) -> None:
        if isinstance(value, str):
            if value not in self.registry.lock_managers:
                raise LockManagerNotFound(value, list(self.registry.lock_managers))
        elif value is not None and not all(callable(getattr(value, name, None))
                                           for name in _LOCK_MANAGER_METHODS):
            raise TypeError("lock_manager must be None, a registered name or a LockManager, "
                            f"not {value!r}")
        self._lock_manager = value
        self._locks_in_use: Any = None

    def _locks(self) -> Any:
        """The LockManager in use: the one given, made from its name, or the storage's."""
        if self._locks_in_use is None:
            spec = self._lock_manager
            if spec is None or isinstance(spec, str):
                # The storage's choice, as stashflow.locking.default_lock_manager makes it.
                name = spec or getattr(self.storage, "default_lock_manager", None) or "storage"
                factory = self.registry.lock_managers.get(name)
                if factory is None:
                    raise LockManagerNotFound(name, list(self.registry.lock_managers))
                spec = factory(self.storage)
            self._locks_in_use = spec
        return self._locks_in_use

    def _key_for(self, key: str) -> bytes | None:
        """The HMAC key of the record at `key`: derived from the signing key and the record's key.

        Binding the key means a validly signed record copied or moved to another key
        (a cached value served for other inputs) fails its signature check.
        """
        if self._signing_key is None:
            return None
        import hashlib
        import hmac

        return hmac.new(self._signing_key, b"stashflow-record-key\x00" + key.encode("utf-8"),
                        hashlib.sha256).digest()

    # -- writing ----------------------------------------------------------------------

    def _writer(self) -> Serializer:
        if self._write_serializer is None:
            self._write_serializer = resolve_serializer(None, self.registry)
        return self._write_serializer

    def check_round_trip(self) -> None:
        """UntrustedSerializer if this store writes records that it refuses to read back."""
        writer = self._writer()
        if self.trusted_serializers is not None and writer.type not in self.trusted_serializers:
            raise UntrustedSerializer(
                None, writer.type, self.trusted_serializers,
                "results written with it could never be read back; choose a trusted "
                "result_serializer (or STASHFLOW_RESULTS_DEFAULT_SERIALIZER)")

    def write(self, key: str, obj: Any, expiration: datetime | timedelta | float | None = None,
              holder: str | None = None) -> RecordMetadata:
        """Store `obj` under `key`, replacing any record there, atomically.

        On a store given a `lock_manager`, a key locked by another holder is refused
        (RuntimeError), as in Prefect: `holder` (default: the caller) must hold it or
        nobody may.
        """
        validate_key(key)
        if self._lock_manager is not None:
            self._check_writer(key, holder)
        now = datetime.now(UTC)
        sink = _DeferredWrite(self.storage, key)
        try:
            meta = write_record(sink, obj, self._writer(), created=now,
                                expiration=as_expiration(expiration, now),
                                signing_key=self._key_for(key), key=key)
        except BaseException as exc:
            sink.abort(exc)
            raise
        sink.commit()
        return meta

    def create(self, key: str, obj: Any, expiration: datetime | timedelta | float | None = None
               ) -> bool:
        """Store `obj` only if no record is at `key`; True when this call stored it."""
        import io

        validate_key(key)
        now = datetime.now(UTC)
        buf = io.BytesIO()
        write_record(buf, obj, self._writer(), created=now,
                     expiration=as_expiration(expiration, now), signing_key=self._key_for(key),
                     key=key)
        return self.storage.create(key, buf.getvalue())

    # -- reading ----------------------------------------------------------------------

    def _choose(self, key: str):
        def choose(meta: RecordMetadata) -> Serializer:
            if meta.is_expired():  # a miss: nothing is verified or decoded
                raise ResultExpired(key, self.storage)
            name = meta.serializer
            if self.trusted_serializers is not None and name not in self.trusted_serializers:
                raise UntrustedSerializer(key, name, self.trusted_serializers)
            if self.serializer is not None and self.serializer.type == name:
                return self.serializer
            cls = self.registry.serializers.get(name)
            if cls is None:

                hint = install_hint("serializer", name)
                raise SerializerNotFound(
                    name, list(self.registry.serializers),
                    f"the record at key {key!r} needs it; "
                    + (hint or "install the plugin that provides it"),
                )
            return cls()
        return choose

    def _open(self, key: str) -> Any:
        """The stored object at `key`, open for reading; ResultNotFound if there is none."""
        validate_key(key)
        try:
            return self.storage.open_read(key)
        except FileNotFoundError:
            raise ResultNotFound(key, self.storage) from None

    def read_record(self, key: str, holder: str | None = None) -> ResultRecord:
        """The value and metadata of the record at `key` (verified before decoding).

        On a store given a `lock_manager`, a key locked by another holder is read once
        they release it (the record they are writing, not the one before), as in Prefect.
        """
        if self._lock_manager is not None:
            self._wait_for_writer(key, holder)
        with self._open(key) as f:
            return read_record(f, key, self._choose(key), signing_key=self._key_for(key),
                               private=self.trusted_serializers is not None)

    def read(self, key: str, holder: str | None = None) -> Any:
        """The value stored at `key`; ResultNotFound if absent or expired."""
        return self.read_record(key, holder).value

    def _held_by_another(self, key: str, holder: str | None) -> bool:
        locks = self._locks()
        return locks.is_locked(validate_key(key)) and not locks.is_lock_holder(
            key, holder or default_holder())

    def _check_writer(self, key: str, holder: str | None) -> None:
        if self._held_by_another(key, holder):
            raise RuntimeError(f"cannot write the record at {key!r}: another holder has its "
                               "lock; take it first (store.acquire_lock(key, holder=...)) or "
                               "wait for it (store.wait_for_lock(key))")

    def _wait_for_writer(self, key: str, holder: str | None) -> None:
        if self._held_by_another(key, holder):
            self._locks().wait_for_lock(key)

    def read_metadata(self, key: str) -> RecordMetadata:
        """The header of the record at `key`, without reading its payload."""
        with self._open(key) as f:
            return read_header(f, key)[0]

    def exists(self, key: str) -> bool:
        """True if a record is stored at `key` (expired or not)."""
        return self.storage.exists(validate_key(key))

    def is_valid(self, key: str) -> bool:
        """True if a record at `key` has a sound, unexpired header (the payload is not read)."""
        try:
            return not self.read_metadata(key).is_expired()
        except (ResultNotFound, ResultCorrupted, StorageEntryRefused):
            return False

    def delete(self, key: str) -> None:
        """Remove the record at `key`; nothing happens if there is none."""
        self.storage.delete(validate_key(key))

    # -- async: the same methods, run in a worker thread so the event loop runs on ------
    # Backends are synchronous; each call runs whole in one thread, so a record is
    # written (atomically) or not at all. A cancelled caller stops waiting; the thread
    # finishes what it started (a write may still land).

    def _caller(self, holder: str | None) -> str | None:
        """The holder a worker thread acts for: given, or the calling task's (with locks)."""
        return holder or (default_holder() if self._lock_manager is not None else None)

    async def aread(self, key: str, holder: str | None = None) -> Any:
        """`read` in a worker thread."""
        return await _in_worker_thread(self.read, key, self._caller(holder))

    async def aread_record(self, key: str, holder: str | None = None) -> ResultRecord:
        """`read_record` in a worker thread."""
        return await _in_worker_thread(self.read_record, key, self._caller(holder))

    async def awrite(self, key: str, obj: Any,
                     expiration: datetime | timedelta | float | None = None,
                     holder: str | None = None) -> RecordMetadata:
        """`write` in a worker thread."""
        return await _in_worker_thread(self.write, key, obj, expiration, self._caller(holder))

    async def aexists(self, key: str) -> bool:
        """`exists` in a worker thread."""
        return await _in_worker_thread(self.exists, key)

    async def adelete(self, key: str) -> None:
        """`delete` in a worker thread."""
        return await _in_worker_thread(self.delete, key)

    # -- locks (Prefect's names), with this store's lock manager ------------------------
    # `holder` defaults to `default_holder()`: the calling thread, or asyncio task.

    generate_default_holder = staticmethod(default_holder)

    def acquire_lock(self, key: str, holder: str | None = None,
                     acquire_timeout: float | None = None, hold_timeout: float | None = None,
                     *, timeout: float | None = _UNSET) -> bool:
        """Take the lock of `key`, waiting up to `acquire_timeout` seconds (None: as long as
        it takes; `timeout` is Prefect's store's name for it); False if it is not free by
        then. The lock lapses `hold_timeout` seconds after it is taken (None: the manager's
        lease, 30 s by default) unless `release_lock` gives it back first."""
        acquire_timeout = _acquire_timeout("acquire_lock", acquire_timeout, timeout)
        return self._locks().acquire_lock(validate_key(key), holder or default_holder(),
                                          acquire_timeout, hold_timeout)

    async def aacquire_lock(self, key: str, holder: str | None = None,
                            acquire_timeout: float | None = None,
                            hold_timeout: float | None = None,
                            *, timeout: float | None = _UNSET) -> bool:
        """`acquire_lock`, waiting in a worker thread; the default holder is this task."""
        acquire_timeout = _acquire_timeout("aacquire_lock", acquire_timeout, timeout)
        holder = holder or default_holder()  # here, in the task, not in the worker thread
        return await self._locks().aacquire_lock(validate_key(key), holder, acquire_timeout,
                                                 hold_timeout)

    def release_lock(self, key: str, holder: str | None = None) -> None:
        """Give the lock of `key` back; LockNotHeld (a ValueError) if `holder` does not hold it."""
        self._locks().release_lock(validate_key(key), holder or default_holder())

    def is_locked(self, key: str) -> bool:
        """True if someone holds the lock of `key` (and their lease has not run out)."""
        return self._locks().is_locked(validate_key(key))

    def is_lock_holder(self, key: str, holder: str | None = None) -> bool:
        """True if `holder` (default: the caller) holds the lock of `key`."""
        return self._locks().is_lock_holder(validate_key(key), holder or default_holder())

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until `key` is not locked; False if it still is after `timeout` seconds."""
        return self._locks().wait_for_lock(validate_key(key), timeout)

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """`wait_for_lock`, waiting in a worker thread."""
        return await self._locks().await_for_lock(validate_key(key), timeout)

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys of the stored records that start with `prefix`."""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {prefix!r}")
        if prefix:
            validate_key(prefix.rstrip("/") or "x")
        return record_keys(self.storage, prefix)

    # -- managing what is stored (see stashflow.maintenance) ---------------------------

    def records(self, prefix: str = "") -> Iterator[StoredRecord]:
        """Each record under `prefix` with its header (key, size, serializer, created, expires)."""
        return maintenance.records(self.storage, prefix)

    def delete_prefix(self, prefix: str, *, dry_run: bool = False) -> list[str]:
        """Remove every record whose key starts with `prefix`; returns their keys."""
        return maintenance.remove_prefix(self.storage, prefix, dry_run=dry_run)

    def gc(self, expired: bool = True, older_than: timedelta | float | str | None = None, *,
           dry_run: bool = False, progress: Callable[[int, int], None] | None = None,
           **options: Any) -> GcReport:
        """Remove expired records, records older than `older_than`, and orphaned temp files.

        Options are those of `stashflow.maintenance.gc` (prefix, temp_files, temp_grace).
        """
        return maintenance.gc(self.storage, expired=expired, older_than=older_than, dry_run=dry_run,
                  progress=progress, **options)


class _DeferredWrite:
    """`write_record`'s file for `ResultStore.write`: opens storage only when it must.

    A small record arrives in one `write` call; it is kept and handed to
    `storage.write(key, data)` at commit, which for the local backend is a bare
    open/write/close/rename and for an object store one PUT. A second write (a
    large or streamed record) opens `storage.open_write(key)` and streams from
    there; `abort` discards whatever was started, so a failed write leaves nothing.
    With it a persisted task went from 66.8 to 57.5 us on tmpfs (benchmarks, 2026-11-24).
    """

    __slots__ = ("_ctx", "_file", "_first", "key", "storage")

    def __init__(self, storage: StorageBackend, key: str):
        self.storage, self.key = storage, key
        self._first: bytes | bytearray | memoryview | None = None
        self._ctx = self._file = None

    def _open(self):
        self._ctx = self.storage.open_write(self.key)
        self._file = self._ctx.__enter__()
        if self._first is not None:
            self._file.write(self._first)
            self._first = None
        return self._file

    def write(self, data) -> int:
        if self._file is None:
            if self._first is None:
                self._first = data
                return len(data)
            self._open()
        return self._file.write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        # write_record seeks only after streaming (so the file is open); keep the contract anyway
        return (self._file or self._open()).seek(offset, whence)

    def commit(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
        else:
            self.storage.write(self.key, self._first if self._first is not None else b"")

    def abort(self, exc: BaseException) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
