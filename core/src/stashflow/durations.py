"""Durations, however a user gives them: a timedelta, seconds, or text like `12h`.

Every option and setting that takes a length of time (cache expiration, record
expiry, gc ages, lock leases, retry delays) goes through here, so they all
accept the same spellings and fail with the same kind of message.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """`30s`, `30m`, `12h`, `7d`, `2w`, or a sum of them (`1d12h`) as a timedelta."""
    if not isinstance(text, str):
        raise TypeError(f"a duration must be a str like '12h', not {text!r}")
    spec = text.strip().lower()
    pos, seconds = 0, 0.0
    for match in _DURATION.finditer(spec):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not spec or pos != len(spec):
        raise ValueError(
            f"{text!r} is not a duration: use a number and a unit, s (seconds), m (minutes), "
            "h (hours), d (days) or w (weeks), e.g. 30m, 12h, 7d, 1d12h"
        )
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def as_timedelta(value: timedelta | float | str | None, what: str) -> timedelta | None:
    """None, or a timedelta from a timedelta, seconds or a duration like '7d'."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        return parse_duration(value)
    if _is_number(value):
        try:
            return timedelta(seconds=value)
        except (OverflowError, ValueError):
            raise ValueError(f"{what} of {value!r} seconds is out of range") from None
    raise TypeError(f"{what} must be a datetime.timedelta, seconds or a duration like '7d', "
                    f"not {value!r}")


def as_seconds(value: float, what: str) -> float:
    """A positive, finite number of seconds (a lease, a poll interval)."""
    if not _is_number(value) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"a {what} must be a positive number of seconds, not {value!r}")
    return float(value)


def as_expiration(value: datetime | timedelta | float | str | None,
                  now: datetime) -> datetime | None:
    """An absolute expiry from a datetime, or a duration (timedelta, seconds, '7d') from `now`."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        return now + as_timedelta(value, "expiration")
    except TypeError:
        raise TypeError(f"expiration must be a datetime, a timedelta, seconds or a duration "
                        f"like '7d', not {value!r}") from None


__all__ = ["as_expiration", "as_seconds", "as_timedelta", "parse_duration"]
