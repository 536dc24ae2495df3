"""Run reporting: one log line per task run, per retry and per flow run.

Loggers: `stashflow.task_runs` (each task run's final state, duration and record;
each retry) and `stashflow.flow_runs` (each flow run's summary). They are ordinary
`logging` loggers: configure them as any other. When the program has configured no
logging at all (the root logger has no handler), the first flow run gives the
`stashflow` logger a console handler on stderr at STASHFLOW_LOGGING_LEVEL (INFO by
default), so a script shows what its flow did as Prefect's do; `STASHFLOW_LOGGING_LEVEL
=WARNING` keeps only failures.

A flow with `log_prints=True` sends what its tasks and its body print() to
`stashflow.flow_runs` as well (the text still reaches stdout when no handler is on).

Cost when the level is above INFO: one `isEnabledFor` per run (a cached dict lookup
in `logging`).
"""

from __future__ import annotations

import builtins
import contextvars
import logging
import sys
import threading
from typing import Any

from .. import settings

TASK_LOG = logging.getLogger("stashflow.task_runs")
FLOW_LOG = logging.getLogger("stashflow.flow_runs")
_ROOT = logging.getLogger("stashflow")
_INFO, _ERROR = logging.INFO, logging.ERROR

_console_lock = threading.Lock()
_console: logging.Handler | None = None


def _seconds(duration: float) -> str:
    if duration < 1:
        return f"{duration * 1000:.1f} ms"
    return f"{duration:.2f} s"


class _Console(logging.StreamHandler):
    """stderr, with the time and the level: `12:00:01.123 | INFO | task_runs | ...`."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter(
            "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(short)s | %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        record.short = record.name.rpartition(".")[2]
        self.stream = sys.stderr  # as it is now (tests and notebooks replace it)
        super().emit(record)


def console_for_flows() -> None:
    """Give the `stashflow` logger its console handler, once, unless logging is configured
    (the root logger or `stashflow` has a handler): then records go where it says."""
    global _console
    if _console is not None or logging.getLogger().handlers or _ROOT.handlers:
        _apply_level()
        return
    with _console_lock:
        if _console is None:
            _console = _Console()
            _ROOT.addHandler(_console)
    _apply_level()


def _apply_level() -> None:
    if _console is not None:
        level = settings.get("STASHFLOW_LOGGING_LEVEL")
        if _ROOT.level != level:
            _ROOT.setLevel(level)


def task_run_finished(task_run: Any, state: Any) -> None:
    """The task run's line: name, final state, duration, and its record or its error."""
    if state.exception is not None:
        if TASK_LOG.isEnabledFor(_ERROR):
            TASK_LOG.error("%s: Failed in %s: %s: %s", task_run.name,
                           _seconds(task_run.duration), type(state.exception).__name__,
                           state.exception)
        return
    if TASK_LOG.isEnabledFor(_INFO):
        where = task_run.location
        TASK_LOG.info("%s: %s in %s%s", task_run.name, state.name, _seconds(task_run.duration),
                      f" ({where})" if where else "")


def task_run_retrying(task_run: Any, exc: BaseException, delay: float, retries: int) -> None:
    if TASK_LOG.isEnabledFor(_INFO):
        TASK_LOG.info("%s: Retrying in %s (retry %d of %d) after %s: %s", task_run.name,
                      _seconds(delay), task_run.run_count - 1, retries, type(exc).__name__, exc)


def flow_run_finished(run: Any, state_name: str, duration: float,
                      exc: BaseException | None = None) -> None:
    """The flow run's summary: its state and how its task runs ended."""
    failed = state_name == "Failed"
    if not FLOW_LOG.isEnabledFor(_ERROR if failed else _INFO):
        return
    counts: dict[str, int] = {}
    for child in run.task_runs:
        counts[child.state] = counts.get(child.state, 0) + 1
    total = sum(counts.values())
    parts = ", ".join(f"{n} {name.lower()}" for name, n in sorted(counts.items(),
                                                                   key=lambda kv: -kv[1]))
    runs = f"{total} task run{'s' if total != 1 else ''}" + (f": {parts}" if parts else "")
    why = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    FLOW_LOG.log(_ERROR if failed else _INFO, "%s: %s%s; %s in %s", run.name, state_name, why,
                 runs, _seconds(duration))


# -- log_prints ---------------------------------------------------------------------------

printing_to_log: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "stashflow_log_prints", default=None)
_real_print = builtins.print
_patched = False


def _print(*args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None,
           flush: bool = False) -> None:
    run = printing_to_log.get()
    if run is None or file not in (None, sys.stdout):
        _real_print(*args, sep=sep, end=end, file=file, flush=flush)
        return
    text = (" " if sep is None else sep).join(map(str, args))
    FLOW_LOG.info("%s: %s", run, text)
    if not FLOW_LOG.isEnabledFor(_INFO):
        _real_print(*args, sep=sep, end=end, file=file, flush=flush)


def prints_to_log(owner: Any, run_name: str, flow_run: Any = None) -> Any:
    """Start sending print() to the log for this run when `owner` (a task or flow) says
    `log_prints=True`, or says nothing inside a flow that does: the token to reset, or None."""
    wanted = getattr(getattr(owner, "options", None), "log_prints", None)
    if wanted is None and flow_run is not None and flow_run.flow is not None:
        wanted = flow_run.flow.options.log_prints
    if not wanted:
        return None if printing_to_log.get() is None else printing_to_log.set(None)
    capture_prints()
    return printing_to_log.set(run_name)


def capture_prints() -> None:
    """Route print() to the log while a `log_prints=True` run is current (installed once,
    on the first such flow: a plain print costs one context-variable read after that)."""
    global _patched
    if not _patched:
        builtins.print = _print
        _patched = True


__all__ = ["FLOW_LOG", "TASK_LOG", "capture_prints", "console_for_flows", "flow_run_finished",
           "printing_to_log", "prints_to_log", "task_run_finished", "task_run_retrying"]
