"""Transactions for `async with`."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from .transaction import Transaction


class AsyncTransaction(Transaction):
    """A transaction for `async with`: locks, reads and writes wait in a thread, so the
    event loop keeps running, and coroutine hooks are awaited."""

    def __enter__(self) -> Transaction:
        raise TypeError("this is an async transaction: use `async with atransaction(...)`")

    async def __aenter__(self) -> AsyncTransaction:
        self._attach()  # the context variable is set in this task's context
        try:
            await asyncio.to_thread(self._begin_if_keyed)  # may wait for a lock
        except BaseException:
            self._detach_failed()
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

