"""Isolation levels: how a transaction (or a cached task run) shares its key with others.

Below both cache policies (which carry one) and transactions (which act on it).
"""

from __future__ import annotations

import enum
from typing import Any


class IsolationLevel(enum.StrEnum):
    """READ_COMMITTED: no lock; SERIALIZABLE: the key's lock is held from entering to the end.

    Members are strings, so `"SERIALIZABLE"` and `IsolationLevel.SERIALIZABLE` are the same.
    """

    READ_COMMITTED = "READ_COMMITTED"
    SERIALIZABLE = "SERIALIZABLE"


def isolation_level(value: Any) -> IsolationLevel | None:
    """None, or the IsolationLevel named by `value` (a member, or its name in any case)."""
    if value is None:
        return None
    name = getattr(value, "value", value)
    if isinstance(name, str):
        try:
            return IsolationLevel(name.upper())
        except ValueError:
            pass
    raise ValueError(f"unknown isolation level {value!r}: use None, 'READ_COMMITTED' or "
                     "'SERIALIZABLE' (or stashflow.transactions.IsolationLevel)")


__all__ = ["IsolationLevel", "isolation_level"]
