"""Transactions: stage a value, write it on commit, undo side effects on rollback.

    with transaction("report.pkl", store, isolation_level="SERIALIZABLE") as txn:
        if txn.is_committed():
            value = txn.read()
        else:
            value = compute()
            txn.stage(value)

With SERIALIZABLE the lock of (storage, key) is taken on entering, before
`is_committed()` is decided, so concurrent callers of the same key - threads,
processes, machines sharing the storage - run the body once and the others read
the record. Transactions nest (through a context variable): a child's commit is
deferred until its outermost parent commits, and a parent's rollback rolls back
its uncommitted children too.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from .exceptions import (
    RECORD_UNUSABLE,
    LockNotHeld,
    ResultCorrupted,
    ResultNotFound,
    StorageEntryRefused,
)
from .isolation import IsolationLevel, isolation_level
from .keys import validate_key
from .locking import Keepalive, LockManager, new_holder, resolve_lock_manager, storage_location
from .results import ResultStore

READ_COMMITTED = IsolationLevel.READ_COMMITTED
SERIALIZABLE = IsolationLevel.SERIALIZABLE
ISOLATION_LEVELS = tuple(IsolationLevel)


def _log():
    import logging  # on first use: most runs never log

    return logging.getLogger("stashflow.transactions")


# What makes a record found on entering unusable (it is then treated as absent).
_UNUSABLE = (ResultNotFound, *RECORD_UNUSABLE)

_current: ContextVar[Transaction | None] = ContextVar("stashflow_transaction", default=None)
_NOTHING: Any = object()

Hook = Callable[["Transaction"], Any]

# States


class TransactionState(enum.StrEnum):
    """Where a transaction is in its life (members are strings: `txn.state == "COMMITTED"`)."""

    PENDING = "PENDING"  # made, not entered
    ACTIVE = "ACTIVE"  # entered
    STAGED = "STAGED"  # a value is staged for the commit
    COMMITTED = "COMMITTED"
    ROLLED_BACK = "ROLLED_BACK"


PENDING, ACTIVE, STAGED, COMMITTED, ROLLED_BACK = TransactionState


def get_transaction() -> Transaction | None:
    """The innermost transaction open in this context, or None."""
    return _current.get()


def _isolation(level: Any) -> IsolationLevel:
    return isolation_level(level) or READ_COMMITTED


def _hooks(value: Hook | Iterable[Hook] | None) -> list[Hook]:
    if value is None:
        return []
    if callable(value):
        return [value]
    hooks = list(value)
    for hook in hooks:
        if not callable(hook):
            raise TypeError(f"a transaction hook must be callable, not {hook!r}")
    return hooks


class Transaction:
    """One unit of work on a key of a ResultStore; use it through `transaction(...)`."""

    def __init__(self, key: str | None = None, store: Any = None, *,
                 isolation_level: str | None = None, lock_manager: Any = None,
                 lease: float | None = None, overwrite: bool = False,
                 expiration: datetime | timedelta | float | None = None):
        self.key = None if key is None else validate_key(key)
        self.store = store
        self.isolation_level = _isolation(isolation_level)
        if lease is not None and not (isinstance(lease, (int, float)) and lease > 0):
            raise ValueError(f"lease must be a positive number of seconds, not {lease!r}")
        self.lease = lease
        self.overwrite = bool(overwrite)
        self.expiration = expiration
        self.lock_manager: LockManager | None = None
        self._holder: str | None = None
        self.parent: Transaction | None = None
        self.children: list[Transaction] = []
        self._lock_spec = lock_manager
        self._values: dict[str, Any] = {}
        self._state = PENDING
        self._exited = False  # its with-block is over (a child may still await the commit)
        self._closing = False  # commit or rollback has begun
        self._mutex = threading.RLock()
        self._staged: Any = _NOTHING
        self._found = False  # a valid record was at the key on entering
        self._found_in: Transaction | None = None  # ... or a pending one in this tree
        self._commit_hooks: list[Hook] = []
        self._rollback_hooks: list[Hook] = []
        self._lease: float | None = None  # set while this transaction holds a lock
        self._keeper: Keepalive | None = None  # renews it while the body runs
        self._token: Any = None

    def __repr__(self) -> str:
        return (f"Transaction(key={self.key!r}, state={self._state}, "
                f"isolation_level={self.isolation_level!r})")

    @property
    def holder(self) -> str:
        """The name this transaction holds its lock under (unique per transaction)."""
        if self._holder is None:
            self._holder = new_holder()
        return self._holder

    # -- state --------------------------------------------------------------------------

    def is_committed(self) -> bool:
        """True if a valid record is at the key (and not `overwrite`) or this one committed."""
        if self._state == COMMITTED:
            return True
        if self.key is None:
            return False
        if self._state == PENDING:
            return not self.overwrite and self._store().is_valid(self.key)
        return self._found  # with overwrite: only a record refreshed while we waited

    def is_staged(self) -> bool:
        """True if a value is staged and waiting for commit."""
        return self._state == STAGED

    def is_rolled_back(self) -> bool:
        return self._state == ROLLED_BACK

    def is_active(self) -> bool:
        """True between entering and the final commit or rollback."""
        return self._state in (ACTIVE, STAGED)

    @property
    def state(self) -> str:
        return self._state

    # -- data ---------------------------------------------------------------------------

    def read(self) -> Any:
        """The committed value at the key (ResultNotFound if there is none).

        A record that cannot be used - corrupt, wrongly signed, untrusted,
        undecodable, expired or deleted since entering - raises, and the
        transaction then counts it as absent: `is_committed()` turns False and a
        staged value is written over it on commit. Under SERIALIZABLE the lock is
        still held at that point, so exactly one of many concurrent callers
        repairs the record and the others read the repaired one.
        """
        if self._found_in is not None and self._found_in._state == STAGED:
            return self._found_in._staged  # written when the outermost transaction commits
        if self.key is None:
            raise ValueError("this transaction has no key to read")
        try:
            value = self._store().read(self.key)
        except _UNUSABLE:
            if self._state in (ACTIVE, STAGED):
                self._found = False
            raise
        if self._found and self._state in (ACTIVE, STAGED):
            self._release_lock()  # the value is read: nothing will be written, let the others in
        return value

    def stage(self, value: Any, on_commit: Hook | Iterable[Hook] | None = None,
              on_rollback: Hook | Iterable[Hook] | None = None) -> None:
        """Stage `value` to be written at the key on commit, with optional hooks.

        A transaction that found a committed record (and is not `overwrite`) does not
        write over it: the committed record wins.
        """
        if self._state not in (ACTIVE, STAGED):
            raise RuntimeError(f"stage() needs an open transaction; this one is {self._state}")
        self._commit_hooks += _hooks(on_commit)
        self._rollback_hooks += _hooks(on_rollback)
        self._staged = value
        self._state = STAGED

    def on_commit(self, fn: Hook) -> Hook:
        """Run `fn(txn)` after a successful commit; usable as a decorator."""
        self._commit_hooks += _hooks(fn)
        return fn

    def on_rollback(self, fn: Hook) -> Hook:
        """Run `fn(txn)` on rollback; usable as a decorator."""
        self._rollback_hooks += _hooks(fn)
        return fn

    def get(self, name: str, default: Any = None) -> Any:
        """A value set on this transaction or, failing that, on one of its parents."""
        txn: Transaction | None = self
        while txn is not None:
            if name in txn._values:
                return txn._values[name]
            txn = txn.parent
        return default

    def set(self, name: str, value: Any) -> None:
        """Set a value visible to this transaction and its children."""
        self._values[name] = value

    # -- context manager ----------------------------------------------------------------

    def _store(self) -> Any:
        if self.store is None:

            self.store = ResultStore()
        return self.store

    def __enter__(self) -> Transaction:
        if self._state != PENDING:
            raise RuntimeError("a transaction can be entered only once")
        parent = _current.get()
        if parent is not None:
            self.parent = parent
            parent.children.append(self)
            if self.store is None and self.key is not None:
                self.store = parent.store
        self._state = ACTIVE
        self._token = _current.set(self)
        try:
            if self.key is not None:
                self._begin()
        except BaseException:
            _current.reset(self._token)
            self._state = ROLLED_BACK
            self._release_lock()
            raise
        return self

    def _begin(self) -> None:
        store = self._store()
        before = None
        if self.isolation_level == SERIALIZABLE:
            if self.overwrite:
                before = self._header()  # to tell a record refreshed by someone we waited for
            self._take_lock()
        if not self.overwrite:
            self._found_in = self._pending_in_tree(
                lambda t: t._state == STAGED and t._staged is not _NOTHING and not t._found)
            self._found = self._found_in is not None or store.is_valid(self.key)
        elif self._lease is not None:
            after = self._header()
            # Another overwriting caller wrote while we waited for the lock: theirs is the
            # fresh record, and running the body again would only replace it.
            self._found = after is not None and after != before and not after.is_expired()
        if self._found_in is not None:
            self._release_lock()  # the value is in memory: let the others read
        elif self._lease is not None:
            # Keep the lock while the body runs, or until the record found is read: a
            # record that turns out unusable is repaired under the lock (see read()).
            self._keeper = Keepalive(self.lock_manager, self.key, self.holder, self._lease)

    def _header(self) -> Any:
        try:
            return self._store().read_metadata(self.key)
        except (ResultNotFound, ResultCorrupted, StorageEntryRefused):
            return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        self._exited = True
        _current.reset(self._token)
        if exc_type is not None:
            self.rollback()
            return False
        if self._state in (COMMITTED, ROLLED_BACK):
            return False
        parent = self.parent
        if parent is not None and parent.is_active() and not parent._closing:
            # The parent commits (or rolls back) us. It sets _closing before looking at
            # its children and we set _exited before looking at it, so if it is closing
            # concurrently (another thread) at least one of us sees the other.
            return False
        self.commit()
        return False

    # -- commit and rollback ------------------------------------------------------------

    def commit(self) -> bool:
        """Write the staged value, then run the commit hooks (children first).

        False if already committed or rolled back. If writing fails, the
        transaction rolls back and the error propagates. Locks are released once
        every record of the subtree is written.
        """
        return self._commit(release=True)

    def _commit(self, release: bool) -> bool:
        with self._mutex:
            if self._state in (COMMITTED, ROLLED_BACK):
                return False
            if self._state == PENDING:
                raise RuntimeError("commit() needs an open transaction")
            self._closing = True
            try:
                for child in list(self.children):
                    if child._exited and child.is_active():
                        child._commit(release=False)
                if self._staged is not _NOTHING and self.key is not None and not self._found:
                    self._store().write(self.key, self._staged, expiration=self.expiration)
            except BaseException:
                self.rollback()
                raise
            self._state = COMMITTED
            try:
                self._run_hooks(self._commit_hooks, "commit", raise_first=True)
            finally:
                if release:
                    self._release_subtree_locks()
            return True

    def rollback(self) -> bool:
        """Discard the staged value and run the rollback hooks (children's first, newest
        child first); nothing is written. False if already committed or rolled back."""
        with self._mutex:
            if self._state in (COMMITTED, ROLLED_BACK):
                return False
            if self._state == PENDING:
                raise RuntimeError("rollback() needs an open transaction")
            self._closing = True
            self._state = ROLLED_BACK
            try:
                for child in reversed(list(self.children)):
                    if child.is_active():
                        child.rollback()
                self._run_hooks(self._rollback_hooks, "rollback", raise_first=False)
            finally:
                self._staged = _NOTHING
                self._release_subtree_locks()
            return True

    def _run_hooks(self, hooks: list[Hook], what: str, raise_first: bool) -> None:
        first: BaseException | None = None
        for hook in hooks:
            try:
                hook(self)
            except Exception as exc:
                _log().exception("%s hook %r of %r failed", what, hook, self)
                first = first or exc
        if first is not None and raise_first:
            raise first

    # -- locks --------------------------------------------------------------------------

    def _lock_id(self) -> tuple[str, str | None]:
        return storage_location(self.store.storage), self.key

    def _tree(self) -> Iterator[Transaction]:
        root = self
        while root.parent is not None:
            root = root.parent
        stack = [root]
        while stack:
            txn = stack.pop()
            yield txn
            stack.extend(txn.children)

    def _pending_in_tree(self, predicate: Callable[[Transaction], bool]) -> Transaction | None:
        """Another transaction of this tree, on the same storage and key, matching `predicate`."""
        if self.parent is None:
            return None
        me = self._lock_id()
        for txn in self._tree():
            if txn is not self and txn.key == self.key and txn.store is not None \
                    and txn._lock_id() == me and predicate(txn):
                return txn
        return None

    def _lock_held_in_tree(self) -> bool:
        """An ancestor, or a finished child awaiting the outermost commit, holds our lock."""
        def holds(txn: Transaction) -> bool:
            if txn._lease is None:
                return False
            if txn._exited:
                return True
            ancestor = self.parent
            while ancestor is not None:
                if ancestor is txn:
                    return True
                ancestor = ancestor.parent
            return False
        return self._pending_in_tree(holds) is not None

    def _take_lock(self) -> None:
        if self._lock_held_in_tree():
            return
        manager = resolve_lock_manager(self._lock_spec, self.store)
        lease = manager.lease_or_default(self.lease)
        if self.parent is None:
            manager.acquire(self.key, self.holder, lease=lease)
        else:
            # A sibling in another thread may hold the lock until our common parent
            # commits: look for that between short waits instead of waiting forever.
            step = 0.05
            while not manager.acquire(self.key, self.holder, timeout=step, lease=lease):
                if self._lock_held_in_tree():
                    return
                step = min(step * 2, 1.0)
        self.lock_manager = manager
        self._lease = lease

    def _release_subtree_locks(self) -> None:
        """Release the locks of this transaction and its finished descendants."""
        stack = [self]
        while stack:
            txn = stack.pop()
            if txn._state in (COMMITTED, ROLLED_BACK):
                txn._release_lock()
                stack.extend(txn.children)

    def _release_lock(self) -> None:
        if self._lease is None:
            return
        self._lease = None
        if self._keeper is not None:
            self._keeper.stop()
            self._keeper = None
        try:
            self.lock_manager.release(self.key, self.holder)
        except LockNotHeld as exc:
            _log().warning("transaction on %r: %s; another caller may have run concurrently",
                           self.key, exc)


def transaction(key: str | None = None, store: Any = None, *,
                isolation_level: str | None = None, lock_manager: Any = None,
                lease: float | None = None, overwrite: bool = False,
                expiration: datetime | timedelta | float | None = None) -> Transaction:
    """A transaction on `key` of `store` (default: the parent's store, else `ResultStore()`).

    `isolation_level`: None or "READ_COMMITTED" (no lock), or "SERIALIZABLE" (hold the
    lock of the key from entering until commit or rollback). `lock_manager`: None (the
    storage's default), a registered name ("memory", "file", "storage") or a
    LockManager. `lease`: seconds a crashed holder can delay the others (default 30).
    `overwrite`: write even if a record exists. `expiration`: of the written record.
    """
    return Transaction(key, store, isolation_level=isolation_level, lock_manager=lock_manager,
                       lease=lease, overwrite=overwrite, expiration=expiration)


__all__ = ["ISOLATION_LEVELS", "READ_COMMITTED", "SERIALIZABLE", "IsolationLevel", "Transaction",
           "TransactionState",
           "get_transaction", "transaction"]
