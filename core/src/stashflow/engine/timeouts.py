"""`timeout_seconds` for sync tasks and flows (async ones use asyncio.wait_for).

A sync body cannot be cancelled from outside, so the run's own thread is interrupted:

- on the main thread, by SIGALRM (`signal.setitimer`), which also cuts short a
  blocking call such as `time.sleep` or a socket read; an outer deadline that falls
  first is left in place, and is restored when an inner one ends;
- on any other thread (a task runner's worker), by an asynchronous exception
  (`PyThreadState_SetAsyncExc`), which is raised at the thread's next Python
  instruction: a body blocked inside one long C call sees it when that call returns.

Either way the body gets TimeoutError, which fails the run (and may be retried).
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import threading
import time
from collections.abc import Iterator


def _expired(what: str, seconds: float) -> TimeoutError:
    return TimeoutError(f"{what} exceeded timeout_seconds={seconds:g}")


@contextlib.contextmanager
def deadline(seconds: float | None, what: str) -> Iterator[None]:
    """Raise TimeoutError in the block when it runs longer than `seconds` (None: never)."""
    if not seconds:
        yield
    elif threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        with _alarm(seconds, what):
            yield
    else:
        with _async_exception(seconds, what):
            yield


@contextlib.contextmanager
def _alarm(seconds: float, what: str) -> Iterator[None]:
    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)
    if outer_left and outer_left <= seconds:
        yield  # an enclosing deadline comes first: it stays in charge
        return

    def expire(signum, frame):
        raise _expired(what, seconds)

    started = time.monotonic()
    outer_handler = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if outer_left:
            left = outer_left - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6))


@contextlib.contextmanager
def _async_exception(seconds: float, what: str) -> Iterator[None]:
    target = ctypes.c_ulong(threading.get_ident())
    guard = threading.Lock()
    state = {"done": False, "fired": False}

    def fire() -> None:
        with guard:
            if not state["done"]:
                state["fired"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(target, ctypes.py_object(TimeoutError))

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except TimeoutError as exc:
        if state["fired"] and not exc.args:
            raise _expired(what, seconds) from None
        raise
    finally:
        with guard:
            state["done"] = True
            timer.cancel()
            if state["fired"]:  # delivered, perhaps not yet raised: take it back
                ctypes.pythonapi.PyThreadState_SetAsyncExc(target, None)
    if state["fired"]:
        raise _expired(what, seconds)
