"""Managing what is stored: list records by their headers, remove them, collect garbage.

Everything here reads record headers only (a few dozen bytes each, one small
read per record); no payload is read or deserialized. `gc` reclaims expired
records, records older than a given age, and temp files left behind by writers
that died (on backends that stage writes in temp files: local disk).

None of it stops half way: an entry it cannot handle - a name that is not a
valid key (undecodable bytes, a control character), a link or a FIFO the
storage refuses, a record that fails to read or delete - is skipped, reported
in `skipped` with why, and everything else is still done. Entries that are not
regular files are never opened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .durations import as_timedelta
from .exceptions import (
    InvalidResultKey,
    ResultCorrupted,
    StashflowError,
    StorageEntryRefused,
    StorageError,
)
from .keys import is_internal, is_temp, validate_key
from .records import RecordMetadata, read_header
from .storage import StorageBackend

# A temp file untouched for this long belongs to no live writer: a writer's
# file changes on every chunk it writes, and even a huge record is written in minutes.
TEMP_GRACE = timedelta(hours=1)

Progress = Callable[[int, int], None]  # (done, total)

@dataclass(frozen=True)
class StoredRecord:
    """One stored record as its header describes it (`metadata` None if unreadable)."""

    key: str
    metadata: RecordMetadata | None
    problem: str | None = None  # why the header could not be read

    @property
    def size(self) -> int | None:
        """Bytes the record takes in storage (header and payload)."""
        return None if self.metadata is None else self.metadata.record_size

    @property
    def serializer(self) -> str | None:
        return None if self.metadata is None else self.metadata.serializer

    @property
    def created(self) -> datetime | None:
        return None if self.metadata is None else self.metadata.created

    @property
    def expiration(self) -> datetime | None:
        return None if self.metadata is None else self.metadata.expiration

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.metadata is not None and self.metadata.is_expired(now)


def printable(text: str) -> str:
    """`text` safe to show on a terminal: undecodable bytes as \\xNN, control characters escaped."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch.isprintable():
            out.append(ch)
        elif 0xDC80 <= code <= 0xDCFF:  # a byte os.scandir could not decode (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


@dataclass(frozen=True)
class SkippedEntry:
    """An entry in storage that listing, removal or gc left alone, and why."""

    name: str  # as found: undecodable bytes are surrogate escapes (see `shown`)
    reason: str
    failed: bool = False  # an error while reading or removing it (else: not a record at all)

    @property
    def shown(self) -> str:
        """The name, safe to print."""
        return printable(self.name)

    def __str__(self) -> str:
        return f"{self.shown}: {printable(self.reason)}"


def _skip(skipped: list[SkippedEntry], name: str, why: BaseException | str,
          failed: bool = False) -> None:
    if isinstance(why, StorageEntryRefused):
        reason = why.why
    elif isinstance(why, InvalidResultKey):
        reason = f"is not a valid key: {why.reason}"
    elif isinstance(why, BaseException):
        reason, failed = f"failed: {why}", True
    else:
        reason = why
    skipped.append(SkippedEntry(name, reason, failed))


class RecordListing(Iterator[StoredRecord]):
    """What `records()` returns: its StoredRecords, and `skipped` as they are met."""

    def __init__(self, storage: StorageBackend, prefix: str):
        self.skipped: list[SkippedEntry] = []
        self._records = _records(storage, prefix, self.skipped)

    def __next__(self) -> StoredRecord:
        return next(self._records)


class Removed(list):
    """The keys removed (a list, as before), with `skipped`: the entries left alone and why."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[SkippedEntry] = []


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, not {prefix!r}")
    if prefix:
        validate_key(prefix.rstrip("/") or "x")
    return prefix


def describe(storage: StorageBackend, key: str) -> StoredRecord:
    """The header of the record at `key` (FileNotFoundError if there is none)."""
    try:
        with storage.open_read(key) as f:
            return StoredRecord(key, read_header(f, key)[0])
    except ResultCorrupted as exc:
        return StoredRecord(key, None, exc.reason)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if isinstance(exc, StorageError):  # the backend itself failed: not this record's fault
            raise
        return StoredRecord(key, None, f"cannot be read: {exc}")


def _candidates(storage: StorageBackend, prefix: str, skipped: list[SkippedEntry],
                temps: list[str] | None = None) -> Iterator[str]:
    """The valid keys under `prefix` that name a regular file; the other entries go to `skipped`.

    stashflow's internal keys (lock records, temp files) are no records: passed over,
    except that temp files go to `temps` when it is given.
    """
    for name, problem in storage.list_entries(_check_prefix(prefix)):
        if is_internal(name):
            if temps is not None and problem is None and is_temp(name):
                temps.append(name)
            continue
        if problem is None:
            try:
                yield validate_key(name)
            except InvalidResultKey as exc:
                _skip(skipped, name, exc)
        else:
            _skip(skipped, name, problem)


def records(storage: StorageBackend, prefix: str = "") -> RecordListing:
    """Every record whose key starts with `prefix`, with what its header says.

    An iterator; its `skipped` lists the entries that are not records it could read.
    """
    return RecordListing(storage, prefix)


def _records(storage: StorageBackend, prefix: str,
             skipped: list[SkippedEntry]) -> Iterator[StoredRecord]:
    for key in _candidates(storage, prefix, skipped):
        try:
            yield describe(storage, key)
        except FileNotFoundError:  # deleted since it was listed
            continue
        except (StashflowError, OSError) as exc:
            _skip(skipped, key, exc)


def remove(storage: StorageBackend, keys: Iterable[str], *, dry_run: bool = False) -> Removed:
    """Delete the records at `keys`; returns the keys that held a record (and `skipped`)."""
    removed = Removed()
    for key in keys:
        try:
            if storage.exists(validate_key(key)):
                if not dry_run:
                    storage.delete(key)
                removed.append(key)
        except (StashflowError, OSError) as exc:
            _skip(removed.skipped, key, exc)
    return removed


def remove_prefix(storage: StorageBackend, prefix: str, *, dry_run: bool = False) -> Removed:
    """Delete every record whose key starts with `prefix` (a plain string prefix)."""
    if not _check_prefix(prefix):
        raise StashflowError("refusing to remove by an empty prefix (that is every record); "
                             "name a prefix, or use gc(older_than=timedelta(0))")
    removed = Removed()
    for key in sorted(_candidates(storage, prefix, removed.skipped)):
        if not dry_run:
            try:
                storage.delete(key)
            except (StashflowError, OSError) as exc:
                _skip(removed.skipped, key, f"could not be removed: {exc}", failed=True)
                continue
        removed.append(key)
    return removed


@dataclass
class GcReport:
    """What `gc` removed (or, with dry_run, would remove)."""

    dry_run: bool = False
    examined: int = 0
    removed: list[str] = field(default_factory=list)
    removed_bytes: int = 0
    temp_files: list[str] = field(default_factory=list)
    temp_bytes: int = 0
    unreadable: list[str] = field(default_factory=list)  # records whose header is damaged: kept
    skipped: list[SkippedEntry] = field(default_factory=list)  # entries left alone, and why

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        line = (f"examined {self.examined} records; {verb} {len(self.removed)} records "
                f"({_size(self.removed_bytes)}) and {len(self.temp_files)} orphaned temp files "
                f"({_size(self.temp_bytes)})")
        if self.unreadable:
            line += f"; {len(self.unreadable)} records have a damaged or unreadable header and were kept"
        if self.skipped:
            line += f"; {skipped_summary(self.skipped)}"
        return line


def skipped_summary(skipped: list[SkippedEntry]) -> str:
    """How many entries were skipped, and what kind, in one line."""
    what = "names stashflow cannot handle or not regular files"
    if any(entry.failed for entry in skipped):
        what = "names stashflow cannot handle, entries that are not regular files, or that failed"
    return f"{len(skipped)} entries skipped: {what}"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def gc(storage: StorageBackend, *, expired: bool = True,
       older_than: timedelta | float | str | None = None, prefix: str = "",
       temp_files: bool = True, temp_grace: timedelta | float | str = TEMP_GRACE,
       dry_run: bool = False, progress: Progress | None = None,
       now: datetime | None = None) -> GcReport:
    """Remove expired records, records created more than `older_than` ago, and orphaned temp files.

    A record is removed only if its header, read again just before the delete,
    still says so (a record rewritten meanwhile is kept). Temp files are removed
    only when untouched for `temp_grace`, so a live writer's file is never taken.
    `progress(done, total)` is called as records are examined.
    """
    older = as_timedelta(older_than, "older_than")
    grace = as_timedelta(temp_grace, "temp_grace")
    for name, value in (("older_than", older), ("temp_grace", grace)):
        if value is not None and value < timedelta(0):
            raise ValueError(f"{name} must not be negative, not {value}")
    now = now or datetime.now(UTC)
    report = GcReport(dry_run=dry_run)

    def doomed(record: StoredRecord) -> bool:
        if record.metadata is None:
            return False
        if expired and record.is_expired(now):
            return True
        return older is not None and now - record.metadata.created >= older

    temps: list[str] = []
    keys = list(_candidates(storage, prefix, report.skipped, temps))
    for done, key in enumerate(keys, 1):
        try:
            _examine(storage, key, doomed, dry_run, report)
        except (StashflowError, OSError) as exc:  # this record only: go on with the others
            _skip(report.skipped, key, exc)
        if progress is not None:
            progress(done, len(keys))
    if temp_files:
        _collect_temp_files(storage, temps, now.timestamp() - (grace or timedelta(0)).total_seconds(),
                            dry_run, report)
    return report


def _examine(storage: StorageBackend, key: str, doomed: Callable[[StoredRecord], bool],
             dry_run: bool, report: GcReport) -> None:
    try:
        record = describe(storage, key)
    except FileNotFoundError:  # deleted since it was listed
        return
    report.examined += 1
    if record.metadata is None:
        report.unreadable.append(key)
    elif doomed(record) and (dry_run or _delete_if(storage, key, doomed)):
        report.removed.append(key)
        report.removed_bytes += record.size or 0


def _delete_if(storage: StorageBackend, key: str, doomed: Callable[[StoredRecord], bool]) -> bool:
    """Delete `key` if the record there now is still one to remove (not rewritten meanwhile)."""
    try:
        current = describe(storage, key)
    except FileNotFoundError:
        return False
    if not doomed(current):
        return False
    storage.delete(key)
    return True


def temp_keys(storage: StorageBackend, prefix: str = "") -> list[str]:
    """The temp files under `prefix` that writers staged and have not (yet) published.

    A backend that stages writes names them `.stashflow-tmp-...`; a live writer's file
    is among them until it publishes, a dead writer's until gc takes it.
    """
    return sorted(key for key in storage.list(prefix) if is_temp(key))


def _collect_temp_files(storage: StorageBackend, temps: list[str], cutoff: float, dry_run: bool,
                        report: GcReport) -> None:
    """Remove the temp files in `temps` last modified before `cutoff` (seconds since the epoch).

    The backend's `stat` must give "mtime" for them; a backend that does not is never
    cleaned here (its writes need no temp files, or it cleans up after itself).
    """
    for key in temps:
        try:
            info = storage.stat(key)
        except FileNotFoundError:  # its writer finished or cleaned up
            continue
        except (StashflowError, OSError) as exc:
            _skip(report.skipped, key, exc)
            continue
        mtime = info.get("mtime")
        if mtime is None or mtime > cutoff:
            continue
        if not dry_run:
            try:
                storage.delete(key)
            except (StashflowError, OSError) as exc:
                _skip(report.skipped, key, f"is an orphaned temp file that could not be "
                                           f"removed: {exc}", failed=True)
                continue
        report.temp_files.append(key)
        report.temp_bytes += info.get("size") or 0


__all__ = ["GcReport", "RecordListing", "Removed", "SkippedEntry", "StoredRecord", "describe", "gc",
           "printable", "records", "remove", "remove_prefix", "skipped_summary",
           "temp_keys"]
