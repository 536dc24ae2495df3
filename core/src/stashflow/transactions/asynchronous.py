"""Transactions for `async with`."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta
from typing import Any

from .states import ROLLED_BACK
from .transaction import Transaction


class AsyncTransaction(Transaction):
    """A transaction for `async with`: locks, reads and writes wait in a thread, so the
    event loop keeps running, and coroutine hooks are awaited."""

    def __enter__(self) -> Transaction:
        raise TypeError("this is an async transaction: use `async with atransaction(...)`")

    async def __aenter__(self) -> AsyncTransaction:
        self._attach()  # the context variable is set in this task's context
        guard = threading.Lock()
        begun = {"done": False, "abandoned": False}

        def begin() -> None:
            try:
                self._begin_if_keyed()  # may wait for a lock
            finally:
                with guard:
                    begun["done"] = True
                    abandoned = begun["abandoned"]
                if abandoned:  # the caller gave up waiting: give back what was taken
                    self._release_lock()

        try:
            await asyncio.to_thread(begin)
        except BaseException:
            # Cancelled (a timeout, say) while the thread waits for the lock: the thread
            # goes on, and must not keep (and renew) a lock taken for no one.
            with guard:
                begun["abandoned"] = True
                done = begun["done"]
            if done:
                self._detach_failed()
            else:  # as _detach_failed, but the lock is the thread's to give back
                self._token.var.reset(self._token)
                self._state = ROLLED_BACK
            raise
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        self._leave()
        await asyncio.to_thread(self._close, exc_type is not None)
        return False

    async def commit(self) -> bool:  # type: ignore[override]
        return await asyncio.to_thread(self._commit, True)

    async def rollback(self) -> bool:  # type: ignore[override]
        return await asyncio.to_thread(self._rollback)

    async def read(self) -> Any:  # type: ignore[override]
        return await asyncio.to_thread(Transaction.read, self)


def atransaction(key: str | None = None, store: Any = None, commit_mode: Any = None,
                 isolation_level: Any = None, overwrite: bool = False,
                 write_on_commit: bool = True, logger: Any = None, *,
                 lock_manager: Any = None, lease: float | None = None,
                 expiration: datetime | timedelta | float | None = None) -> AsyncTransaction:
    """`transaction(...)` for `async with`: the same options and semantics."""
    return AsyncTransaction(key, store, commit_mode, isolation_level, overwrite, write_on_commit,
                            logger, lock_manager=lock_manager, lease=lease,
                            expiration=expiration)

