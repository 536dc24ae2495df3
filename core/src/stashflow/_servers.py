"""Start real servers on loopback for tests (moto, storage emulators, Azurite).

Private helper shared by the plugins' test suites: pick a free port, start the
server in its own session with output to a log file (never an unread pipe),
poll over HTTP until anything answers, stop by process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None,
              log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}:\n{tail}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # any HTTP status means it is up
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no answer from {url} after {timeout}s")


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path):
        self.proc, self.url, self.log = proc, url, log

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@contextlib.contextmanager
def running(cmd: Sequence[str], url: str, log: Path, *, cwd: Path | None = None,
            env: dict[str, str] | None = None, timeout: float = 30.0) -> Iterator[Server]:
    """Run `cmd` until the block ends; `url` is polled until the server answers."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True,
                                env={**os.environ, **(env or {})})
    server = Server(proc, url, log)
    try:
        wait_http(url, timeout, proc, log)
        yield server
    finally:
        server.stop()
