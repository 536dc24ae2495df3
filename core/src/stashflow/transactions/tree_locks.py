"""Locks for SERIALIZABLE transactions, held by a tree of nested transactions as one.

A child on the same storage and key as a transaction of its tree that already
holds the lock (an ancestor, or a finished child awaiting the outermost commit)
takes it over rather than waiting for itself; locks are released once every
record of the tree is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..exceptions import LockNotHeld
from ..locking import resolve_lock_manager, storage_location
from .states import COMMITTED, ROLLED_BACK


class TreeLocks:
    """The lock-keeping part of Transaction (which sets the attributes it reads)."""


    def _lock_id(self) -> tuple[str, str | None]:
        return storage_location(self.store.storage), self.key

    def _tree(self) -> Iterator[Any]:
        root = self
        while root.parent is not None:
            root = root.parent
        stack = [root]
        while stack:
            txn = stack.pop()
            yield txn
            stack.extend(txn.children)

    def _pending_in_tree(self, predicate: Callable[[Any], bool]) -> Any | None:
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
        def holds(txn: Any) -> bool:
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
            self.logger.warning("transaction on %r: %s; another caller may have run concurrently",
                           self.key, exc)


