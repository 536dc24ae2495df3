"""Transactions: stage a value, write it on commit, undo side effects on rollback.

    with transaction("report", isolation_level="SERIALIZABLE") as txn:
        if txn.is_committed():
            value = txn.read()
        else:
            value = compute()
            txn.stage(value)

The semantics are Prefect's (its transactions page reads true here with the
names changed): a transaction with a key writes a record when it commits -
the staged value, or None when nothing was staged - so a later transaction on
the key finds it committed; `commit_mode` says who commits (LAZY: the
outermost transaction, the default; EAGER: each at its own end; OFF: nobody,
it rolls back); a child that rolls back rolls its parents back; hooks run on
commit (before the record is written) and on rollback, and may be coroutine
functions. A failure to commit (a value the serializer refuses, a storage
error) rolls the transaction back and is logged, not raised.

With SERIALIZABLE the lock of (storage, key) is taken on entering, before
`is_committed()` is decided, so concurrent callers of the same key - threads,
processes, machines sharing the storage - run the body once and the others read
the record. `atransaction(...)` is the same for `async with`, its waits (locks,
storage) in a thread so the event loop runs on.
"""

from __future__ import annotations

from ..isolation import IsolationLevel
from .asynchronous import AsyncTransaction, atransaction
from .states import CommitMode, TransactionState, run_maybe_async
from .transaction import (
    ISOLATION_LEVELS,
    READ_COMMITTED,
    SERIALIZABLE,
    Transaction,
    default_store,
    get_transaction,
    transaction,
)

__all__ = ["ISOLATION_LEVELS", "READ_COMMITTED", "SERIALIZABLE", "AsyncTransaction", "CommitMode",
           "IsolationLevel", "Transaction", "TransactionState", "atransaction", "default_store",
           "get_transaction", "run_maybe_async", "transaction"]
