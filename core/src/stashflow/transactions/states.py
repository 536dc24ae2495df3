"""The states and commit modes of transactions, and running their hooks."""

from __future__ import annotations

import asyncio
import enum
import inspect
import threading
from collections.abc import Callable, Iterable
from typing import Any

Hook = Callable[..., Any]


class TransactionState(enum.StrEnum):
    """Where a transaction is in its life (members are strings: `txn.state == "COMMITTED"`)."""

    PENDING = "PENDING"  # made, not entered
    ACTIVE = "ACTIVE"  # entered
    STAGED = "STAGED"  # a value is staged for the commit
    COMMITTED = "COMMITTED"  # committed, or a committed record was found on entering
    ROLLED_BACK = "ROLLED_BACK"


class CommitMode(enum.StrEnum):
    """Who commits a transaction: the outermost one (LAZY, the default), each one when it
    ends (EAGER), or nobody (OFF: it rolls back unless committed explicitly)."""

    EAGER = "EAGER"
    LAZY = "LAZY"
    OFF = "OFF"


def commit_mode(value: Any) -> CommitMode | None:
    if value is None:
        return None
    name = getattr(value, "value", value)
    try:
        return CommitMode(str(name).upper())
    except ValueError:
        raise ValueError(f"unknown commit mode {value!r}: use 'EAGER', 'LAZY' or 'OFF' "
                         "(stashflow.transactions.CommitMode)") from None


def hook_list(value: Hook | Iterable[Hook] | None) -> list[Hook]:
    if value is None:
        return []
    if callable(value):
        return [value]
    hooks = list(value)
    for hook in hooks:
        if not callable(hook):
            raise TypeError(f"a transaction hook must be callable, not {hook!r}")
    return hooks


def run_maybe_async(result: Any) -> Any:
    """`result`, or what it gives when awaited (a coroutine hook run from sync code).

    Run on a fresh event loop: in this thread when none is running here, else in a
    helper thread (this thread's loop is busy running the caller).
    """
    if not inspect.isawaitable(result):
        return result

    async def wait() -> Any:
        return await result

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(wait())
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="stashflow-async-hook")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


PENDING, ACTIVE, STAGED, COMMITTED, ROLLED_BACK = TransactionState

__all__ = ["ACTIVE", "COMMITTED", "PENDING", "ROLLED_BACK", "STAGED", "CommitMode", "Hook",
           "TransactionState", "commit_mode", "hook_list", "run_maybe_async"]
