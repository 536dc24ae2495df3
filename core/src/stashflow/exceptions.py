"""Typed errors. Each says what was wrong, with which value, and what to do."""

from __future__ import annotations


class StashflowError(Exception):
    """Base class of every error stashflow raises on purpose."""

    def __reduce__(self):
        # Subclasses take their own constructor arguments, so the default (calling the
        # class with `args`) would fail; rebuild from the message and the attributes
        # instead, so errors cross process boundaries (process pools, Dask) unchanged.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[StashflowError], args: tuple, state: dict) -> StashflowError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class InvalidResultKey(StashflowError, ValueError):
    """A result key is not a safe relative path inside the storage root."""

    def __init__(self, key: object, reason: str):
        self.key = key
        self.reason = reason
        super().__init__(
            f"invalid result key {key!r}: {reason}. Keys are relative, '/'-separated paths "
            "with no '..', '.' or empty segments, no backslashes and no control characters."
        )


class ResultNotFound(StashflowError, KeyError):
    """No record is stored under the key."""

    def __init__(self, key: str, storage: object = None):
        self.key = key
        self.storage = storage
        super().__init__(key)

    def __str__(self) -> str:
        # Formatted when shown, not when raised: a miss is the engine's common case
        # (0.38 us raised against 1.6 us formatted, timeit 2026-12-04).
        where = f" in {self.storage!r}" if self.storage is not None else ""
        return f"no result stored under key {self.key!r}{where}"


class ResultCorrupted(StashflowError):
    """A stored record is truncated, damaged or not a stashflow record."""

    def __init__(self, key: str | None, reason: str):
        self.key = key
        self.reason = reason
        where = f" at key {key!r}" if key is not None else ""
        super().__init__(
            f"result record{where} is corrupted: {reason}. Delete it or write it again "
            "(the engine treats it as a cache miss and overwrites it)."
        )


class ResultSignatureError(ResultCorrupted):
    """A record is unsigned or its HMAC signature does not verify."""


class SerializerNotFound(StashflowError, LookupError):
    """A serializer name is not registered; names the plugin that provides it."""

    def __init__(self, name: str, known: list[str] | tuple[str, ...] = (), hint: str | None = None):
        self.name = name
        msg = f"unknown serializer {name!r}"
        if hint:
            msg += f": {hint}"
        if known:
            msg += f" (registered: {', '.join(sorted(known))})"
        super().__init__(msg)


class UntrustedSerializer(StashflowError):
    """A record names a serializer that is not trusted for reading; nothing was decoded.

    Also raised before writing with a serializer the store would refuse to read back.
    """

    def __init__(self, key: str | None, name: str, trusted: frozenset[str],
                 advice: str | None = None):
        self.key = key
        self.name = name
        self.trusted = trusted
        if key is not None:
            what = (f"record at key {key!r} uses serializer {name!r}, which this store does "
                    "not trust for reading; nothing was decoded")
        else:
            what = f"serializer {name!r} is not trusted for reading"
        super().__init__(
            f"{what} (trusted: {', '.join(sorted(trusted)) or 'none'}, from trusted_serializers= "
            f"or STASHFLOW_RESULTS_TRUSTED_SERIALIZERS){': ' + advice if advice else ''}. "
            "The trust model: docs/concepts/guarantees.md"
        )


class SerializationError(StashflowError):
    """A value could not be serialized or deserialized by the chosen serializer."""


class DecodeLimitExceeded(SerializationError):
    """A payload would expand past a configured decoding limit; decoding stopped there."""


class StorageNotFound(StashflowError, LookupError):
    """A storage spec (URL scheme, block type or slug) names nothing installed or saved."""


class StorageError(StashflowError, OSError):
    """A storage backend failed; names the backend and the key."""


class StorageEntryRefused(StorageError):
    """Storage will not use what is at a key: a link leading outside its root, a FIFO..."""

    def __init__(self, backend: str, url: str, why: str):
        self.backend = backend
        self.url = url
        self.why = why
        super().__init__(
            f"{backend}: refusing {url}: it {why}. Nothing was read, written or removed "
            "through it; remove it (stashflow itself writes only regular files and "
            "directories there)"
        )


class PluginError(StashflowError):
    """A plugin could not be loaded or registered."""


class PluginWarning(UserWarning):
    """A plugin failed to load or register something; the others keep working.

    Attributed to the plugin's own module (its file and line where known). In code,
    `warnings.filterwarnings("ignore", category=PluginWarning)` (or `module="my_plugin"`)
    silences it; on the command line, where Python resolves only standard-library
    categories, `-W "ignore:stashflow:UserWarning"` (every such message starts with
    "stashflow: ") or `-W ignore::UserWarning:my_plugin`.
    """


class SettingsError(StashflowError, ValueError):
    """An unknown setting name or a value that does not parse."""


class BlockNotFound(StashflowError, LookupError):
    """No block is saved under the slug."""


class TemplateError(StashflowError, ValueError):
    """A result_storage_key template uses a field that is not allowed."""


class CacheKeyError(StashflowError, TypeError):
    """A task input cannot be hashed into a cache key."""


class LockError(StashflowError):
    """A lock could not be taken, kept or released."""


class LockTimeout(LockError, TimeoutError):
    """A lock was still held by someone else when the timeout ran out."""

    def __init__(self, key: str, timeout: float | None, manager: object = None):
        self.key = key
        self.timeout = timeout
        super().__init__(
            f"the lock of key {key!r} ({manager!r}) was still held by someone else after "
            f"{timeout} s; wait longer, or check for a stuck holder"
        )


class LockNotHeld(LockError):
    """A lock was released or renewed by someone who does not hold it (any more)."""

    def __init__(self, key: str, holder: str, manager: object = None, lost: bool = False):
        self.key = key
        self.holder = holder
        self.lost = lost
        why = ("its lease ran out and another holder took it" if lost
               else "it does not hold it")
        super().__init__(f"{holder!r} cannot release the lock of key {key!r} ({manager!r}): {why}")


class LockManagerNotFound(LockError, LookupError):
    """A lock manager name is not registered."""

    def __init__(self, name: str, known: list[str] | tuple[str, ...] = ()):
        self.name = name
        super().__init__(
            f"unknown lock manager {name!r} (registered: {', '.join(sorted(known)) or 'none'}); "
            "pass a registered name, a LockManager instance, or None for the storage's default"
        )


# A record is there but cannot be used: the engine warns, runs the task and overwrites it.
RECORD_UNUSABLE = (ResultCorrupted, SerializationError, SerializerNotFound, UntrustedSerializer,
                   StorageEntryRefused)
