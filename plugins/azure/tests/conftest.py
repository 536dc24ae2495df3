"""Azurite (the Azure Storage emulator, from npm) on loopback for the session.

The repository's package.json pins azurite; if node_modules/.bin/azurite-blob is
missing the fixture runs `npm ci` first, so a fresh clone works. Each test gets
a fresh container.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from stashflow._servers import Server, free_port, running

ROOT = Path(__file__).resolve().parents[3]
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
            pytest.skip("Azurite needs Node.js and npm (apt-get install nodejs npm)")
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


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Iterator[Azurite]:
    with start_azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture
def start_azurite_server(tmp_path):
    """Start an extra Azurite for one test: `with start_azurite_server() as server:`."""
    return lambda **options: start_azurite(tmp_path / "azurite", **options)


@pytest.fixture
def container(azurite) -> str:
    name = f"stashflow-{uuid.uuid4().hex[:12]}"
    azurite.client().create_container(name)
    return name


@pytest.fixture
def backend(azurite, container):
    """A fresh, empty AzureBlobStorageContainer (the conformance-kit fixture name)."""
    from stashflow_azure import AzureBlobStorageContainer

    return AzureBlobStorageContainer(container_name=container, blob_folder="results/v1",
                                     connection_string=azurite.connection_string)
