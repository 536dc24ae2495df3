"""Retries: how long to wait before each one, and whether to retry at all.

`retry_delay_seconds` is a number (every retry waits that long), a list (the
n-th retry waits the n-th delay; the last one repeats) or a callable taking the
number of retries and returning such a list (`exponential_backoff`).
`retry_jitter_factor` randomizes each delay as Prefect does: never more than
delay x (1 + factor), never near 0, about the delay on average. `retry_condition_fn(task, task_run, state)`
decides, from the failed state, whether a retry happens at all.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from typing import Any

MAX_DELAYS = 50  # delays a callable is asked for, at most (retries beyond reuse the last)


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """`retry_delay_seconds=exponential_backoff(2)`: 2, 4, 8, 16... seconds."""
    if not isinstance(backoff_factor, (int, float)) or isinstance(backoff_factor, bool) \
            or backoff_factor < 0:
        raise ValueError(f"backoff_factor must be seconds >= 0, not {backoff_factor!r}")

    def delays(retries: int) -> list[float]:
        return [backoff_factor * 2 ** n for n in range(min(retries, MAX_DELAYS))]

    return delays


def check_delays(value: Any) -> None:
    """Refuse what retry_delay_seconds cannot be (checked when the task is defined)."""
    if value is None or callable(value):
        return
    values = tuple(value) if isinstance(value, Iterable) else (value,)
    if not values or any(not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0
                         for v in values):
        raise ValueError(f"retry_delay_seconds must be seconds >= 0, a list of them, or a "
                         f"callable returning one (exponential_backoff), not {value!r}")


def delays_for(value: Any, retries: int) -> tuple[float, ...]:
    """The delay before each of `retries` retries."""
    if retries <= 0:
        return ()
    if value is None:
        value = 0
    if callable(value):
        value = value(retries)
    check_delays(value)
    values = [float(v) for v in (value if isinstance(value, Iterable) else (value,))]
    return tuple(values[min(n, len(values) - 1)] for n in range(retries))


def check_jitter(factor: Any) -> None:
    if factor is not None and (not isinstance(factor, (int, float)) or isinstance(factor, bool)
                               or factor < 0):
        raise ValueError(f"retry_jitter_factor must be a number >= 0, not {factor!r}")


def jittered(delay: float, factor: float | None, rng: random.Random | None = None) -> float:
    """`delay` made random as Prefect makes it: an exponential wait whose mean is `delay`,
    cut to [delay x c, delay x (1 + f)], where the lower multiple c puts as much
    probability between the bound and the median as between the median and the upper
    bound (so the average stays near `delay` and a retry never fires at once, whatever
    the factor: for f = 3, c is about 0.09).
    """
    if not factor or delay <= 0:
        return delay
    rng = rng or random
    upper = 1.0 + factor
    lower = 0.0 if upper >= 50 else math.log2(2 ** upper / (2 ** upper - 1))
    # The exponential distribution of mean 1, sampled by inverting its CDF between the
    # probabilities of the two bounds.
    p_low, p_high = 1.0 - math.exp(-lower), 1.0 - math.exp(-upper)
    return -math.log(max(1.0 - rng.uniform(p_low, p_high), 1e-10)) * delay


__all__ = ["check_delays", "check_jitter", "delays_for", "exponential_backoff", "jittered"]
