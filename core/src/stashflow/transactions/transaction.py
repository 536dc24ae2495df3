"""The Transaction: one unit of work, on a key of a ResultStore or on none."""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from ..exceptions import (
    RECORD_UNUSABLE,
    ResultCorrupted,
    ResultNotFound,
    SerializationError,
    StorageEntryRefused,
)
from ..isolation import IsolationLevel
from ..isolation import isolation_level as as_isolation_level
from ..keys import validate_key
from ..locking import Keepalive, LockManager, new_holder
from ..results import ResultStore, default_store
from .states import (
    ACTIVE,
    COMMITTED,
    PENDING,
    ROLLED_BACK,
    STAGED,
    CommitMode,
    Hook,
    TransactionState,
    hook_list,
    run_maybe_async,
)
from .states import commit_mode as as_commit_mode
from .tree_locks import TreeLocks

READ_COMMITTED = IsolationLevel.READ_COMMITTED
SERIALIZABLE = IsolationLevel.SERIALIZABLE
ISOLATION_LEVELS = tuple(IsolationLevel)


_LOG = logging.getLogger("stashflow.transactions")


# What makes a record found on entering unusable (it is then treated as absent).
_UNUSABLE = (ResultNotFound, *RECORD_UNUSABLE)

_current: ContextVar[Transaction | None] = ContextVar("stashflow_transaction", default=None)
_NOTHING: Any = object()




_NOT_SET: Any = object()

def get_transaction() -> Transaction | None:
    """The innermost transaction open in this context, or None."""
    return _current.get()


class Transaction(TreeLocks):
    """One unit of work, on a key of a ResultStore or on none; use it through `transaction()`."""

    def __init__(self, key: str | None = None, store: Any = None, commit_mode: Any = None,
                 isolation_level: Any = None, overwrite: bool = False,
                 write_on_commit: bool = True, logger: Any = None, *,
                 lock_manager: Any = None, lease: float | None = None,
                 expiration: datetime | timedelta | float | None = None):
        self.key = None if key is None else validate_key(key)
        self.store = store
        self.commit_mode = as_commit_mode(commit_mode)
        self.isolation_level = as_isolation_level(isolation_level)
        if lease is not None and not (isinstance(lease, (int, float)) and lease > 0):
            raise ValueError(f"lease must be a positive number of seconds, not {lease!r}")
        self.lease = lease
        self.overwrite = bool(overwrite)
        self.write_on_commit = bool(write_on_commit)
        self.logger = logger or _LOG
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
        return (f"{type(self).__name__}(key={self.key!r}, state={self.state}, "
                f"isolation_level={self.isolation_level!r})")

    @property
    def holder(self) -> str:
        """The name this transaction holds its lock under (unique per transaction)."""
        if self._holder is None:
            self._holder = new_holder()
        return self._holder

    # -- state --------------------------------------------------------------------------

    @property
    def state(self) -> TransactionState:
        """PENDING, ACTIVE, STAGED, COMMITTED (also: a committed record was found on
        entering) or ROLLED_BACK."""
        if self._found and self._state in (ACTIVE, STAGED):
            return COMMITTED
        return self._state

    def is_committed(self) -> bool:
        """True if this transaction committed, or found a valid record at its key on
        entering (with `overwrite`: only one written by another caller while it waited)."""
        if self._state == PENDING and self.key is not None:
            return not self.overwrite and self._store().is_valid(self.key)
        return self.state == COMMITTED

    def is_staged(self) -> bool:
        """True if a value is staged and waiting for the commit."""
        return self.state == STAGED

    def is_rolled_back(self) -> bool:
        return self._state == ROLLED_BACK

    def is_pending(self) -> bool:
        """True before the transaction is entered."""
        return self._state == PENDING

    def is_active(self) -> bool:
        """True once entered, while nothing is staged, committed or rolled back."""
        return self.state == ACTIVE

    def _open(self) -> bool:
        """Entered and neither committed nor rolled back yet (staged or not)."""
        return self._state in (ACTIVE, STAGED)

    def get_parent(self) -> Transaction | None:
        """The transaction this one is nested in, or None."""
        return self.parent

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
            value = self._store().read(self.key, holder=self.holder)
        except _UNUSABLE:
            if self._open():
                self._found = False
            raise
        if self._found and self._open():
            self._release_lock()  # the value is read: nothing will be written, let the others in
        return value

    def stage(self, value: Any, on_commit: Hook | Iterable[Hook] | None = None,
              on_rollback: Hook | Iterable[Hook] | None = None, *,
              on_commit_hooks: Iterable[Hook] | None = None,
              on_rollback_hooks: Iterable[Hook] | None = None) -> None:
        """Stage `value` to be written at the key on commit, with optional hooks.

        A transaction that found a committed record (and is not `overwrite`) does not
        write over it: the committed record wins.
        """
        if not self._open():
            raise RuntimeError(f"stage() needs an open transaction; this one is {self.state}")
        self._commit_hooks += hook_list(on_commit) + hook_list(on_commit_hooks)
        self._rollback_hooks += hook_list(on_rollback) + hook_list(on_rollback_hooks)
        self._staged = value
        self._state = STAGED

    def on_commit(self, fn: Hook) -> Hook:
        """Run `fn(txn)` when this transaction commits; usable as a decorator."""
        self._commit_hooks += hook_list(fn)
        return fn

    def on_rollback(self, fn: Hook) -> Hook:
        """Run `fn(txn)` when this transaction rolls back; usable as a decorator."""
        self._rollback_hooks += hook_list(fn)
        return fn

    def get(self, name: str, default: Any = _NOT_SET) -> Any:
        """A copy of the value `set` under `name` here or, failing that, on a parent.

        ValueError if no transaction of the chain has it and no `default` is given.
        Changing the copy changes nothing stored: `set` it again.
        """
        txn: Transaction | None = self
        while txn is not None:
            if name in txn._values:
                return copy.deepcopy(txn._values[name])
            txn = txn.parent
        if default is _NOT_SET:
            raise ValueError(f"no value named {name!r} was set in this transaction or a parent")
        return default

    def set(self, name: str, value: Any) -> None:
        """Set a value visible to this transaction and its children."""
        self._values[name] = value

    # -- context manager ----------------------------------------------------------------

    def _store(self) -> Any:
        if self.store is None:
            find = default_store.get()
            self.store = find() if find is not None else ResultStore()
        return self.store

    def __enter__(self) -> Transaction:
        self._attach()
        try:
            self._begin_if_keyed()
        except BaseException:
            self._detach_failed()
            raise
        return self

    def _attach(self) -> None:
        """Become the current transaction, nested in the one open here (if any)."""
        if self._state != PENDING:
            raise RuntimeError("a transaction can be entered only once")
        parent = _current.get()
        if parent is not None:
            self.parent = parent
            parent.children.append(self)
            if self.store is None and self.key is not None:
                self.store = parent.store
        if self.commit_mode is None:
            self.commit_mode = parent.commit_mode if parent is not None else CommitMode.LAZY
        if self.isolation_level is None:
            self.isolation_level = (parent.isolation_level if parent is not None
                                    else READ_COMMITTED)
        self._state = ACTIVE
        self._token = _current.set(self)

    def _begin_if_keyed(self) -> None:
        if self.key is not None:
            self._begin()

    def _detach_failed(self) -> None:
        _current.reset(self._token)
        self._state = ROLLED_BACK
        self._release_lock()

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
        self._leave()
        self._close(exc_type is not None)
        return False

    def _leave(self) -> None:
        """Stop being the current transaction (the end of the with-block)."""
        self._exited = True
        _current.reset(self._token)

    def _close(self, failed: bool) -> None:
        """Commit or roll back as the commit mode says, at the end of the with-block."""
        if failed:
            self._rollback()
            return
        if self._state in (COMMITTED, ROLLED_BACK):
            self._roll_back_parent_if_rolled_back()
            return
        if self.commit_mode == CommitMode.EAGER:
            self._commit(release=True)
        parent = self.parent
        if parent is not None and parent._open() and not parent._closing:
            # The parent commits (or rolls back) us. It sets _closing before looking at
            # its children and we set _exited before looking at it, so if it is closing
            # concurrently (another thread) at least one of us sees the other.
            self._roll_back_parent_if_rolled_back()
            return
        if self.commit_mode == CommitMode.OFF:
            self._rollback()  # nobody took responsibility for committing
        else:
            self._commit(release=True)

    def _roll_back_parent_if_rolled_back(self) -> None:
        if self._state == ROLLED_BACK and self.parent is not None and self.parent._open():
            self.parent._rollback()

    # -- commit and rollback ------------------------------------------------------------

    def commit(self) -> bool:
        """Commit: the children first, then the commit hooks, then the record is written
        (with a key: the staged value, or None if nothing was staged).

        False if already committed or rolled back, or if committing failed: then the
        transaction has rolled back and the failure is logged (a value the serializer
        refuses is a warning). Locks are released once every record of the subtree is
        written.
        """
        return self._commit(release=True)

    def _commit(self, release: bool) -> bool:
        with self._mutex:
            if self._state in (COMMITTED, ROLLED_BACK):
                if release:
                    self._release_subtree_locks()
                return False
            if self._state == PENDING:
                raise RuntimeError("commit() needs an open transaction")
            self._closing = True
            try:
                for child in list(self.children):
                    if child._exited and child._open():
                        child._commit(release=False)
                self._runhook_list(self._commit_hooks, "commit", raise_first=True)
                if self.key is not None and self.write_on_commit and not self._found:
                    staged = None if self._staged is _NOTHING else self._staged
                    self._store().write(self.key, staged, expiration=self.expiration,
                                        holder=self.holder)
            except SerializationError as exc:
                self.logger.warning("transaction %r was not committed: its value could not be "
                                    "serialized (%s); it is rolled back and the run goes on",
                                    self.key, exc)
                self._rollback()
                return False
            except Exception:
                self.logger.exception("committing transaction %r failed; it is rolled back",
                                      self.key)
                self._rollback()
                return False
            self._state = COMMITTED
            if release:
                self._release_subtree_locks()
            return True

    def rollback(self) -> bool:
        """Discard the staged value, run the rollback hooks (newest first), then roll back
        the children (newest first) and the parents; nothing is written. False if
        already committed or rolled back."""
        return self._rollback()

    def _rollback(self) -> bool:
        with self._mutex:
            if self._state in (COMMITTED, ROLLED_BACK):
                return False
            if self._state == PENDING:
                raise RuntimeError("rollback() needs an open transaction")
            self._closing = True
            self._state = ROLLED_BACK
            try:
                self._runhook_list(list(reversed(self._rollback_hooks)), "rollback",
                                raise_first=False)
                for child in reversed(list(self.children)):
                    if child._open():
                        child._rollback()
            finally:
                self._staged = _NOTHING
                self._release_subtree_locks()
        if self._exited:
            self._roll_back_parent_if_rolled_back()
        return True

    def _runhook_list(self, hooks: list[Hook], what: str, raise_first: bool) -> None:
        first: BaseException | None = None
        for hook in hooks:
            try:
                run_maybe_async(hook(self))
            except Exception as exc:
                self.logger.exception("%s hook %r of %r failed", what, hook, self)
                first = first or exc
        if first is not None and raise_first:
            raise first

def transaction(key: str | None = None, store: Any = None, commit_mode: Any = None,
                isolation_level: Any = None, overwrite: bool = False,
                write_on_commit: bool = True, logger: Any = None, *, lock_manager: Any = None,
                lease: float | None = None,
                expiration: datetime | timedelta | float | None = None) -> Transaction:
    """A transaction, for `with`; on `key` of `store` if a key is given.

    `store`: default the parent's, else the running flow's result store, else
    `ResultStore()`. `commit_mode`: CommitMode.LAZY (default at the top; nested ones
    inherit their parent's), EAGER or OFF. `isolation_level`: READ_COMMITTED (no lock;
    the default at the top, inherited when nested) or SERIALIZABLE (hold the lock of the
    key from entering until commit or rollback). `overwrite`: write even if a record
    exists. `write_on_commit`: False to commit without writing a record.
    `lock_manager`: None (the store's `lock_manager`, else the storage's own), a
    registered name ("memory", "file", "storage") or a LockManager. `lease`: seconds a
    crashed holder can delay the others (default 30). `expiration`: of the written record.
    """
    return Transaction(key, store, commit_mode, isolation_level, overwrite, write_on_commit,
                       logger, lock_manager=lock_manager, lease=lease, expiration=expiration)

