"""Every test in this repository runs with a private STASHFLOW_HOME, and may ask for the
real storage servers (one of each per session, started on first use).

The server harness lives in tests/support (stashflow_test_servers, stashflow_test_clouds),
outside every distribution: this file puts it on sys.path for all test trees.
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests" / "support"))

from stashflow_test_servers import start_azurite, start_gcs_server, start_moto

# Before gcsfs is imported anywhere (../shared/SERVERS.md): without this its client first
# asks a gRPC API no emulator speaks, and each bucket lookup hangs for a minute.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
# No client may look for a cloud's metadata server, which is off loopback.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("NO_GCE_CHECK", "true")
os.environ.setdefault("GCE_METADATA_HOST", "127.0.0.1:9")
os.environ.setdefault("GCE_METADATA_IP", "127.0.0.1:9")


@pytest.fixture(autouse=True)
def _private_stashflow_home(stashflow_home):
    return stashflow_home


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    with start_moto(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="session")
def moto_endpoint(moto_server) -> str:
    return moto_server.url


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    """fake-gcs-server: it honours ifGenerationMatch=0 on uploads, like Google's service."""
    with start_gcs_server(tmp_path_factory.mktemp("gcs")) as server:
        yield server


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """Azurite, after `npm ci` if node_modules/.bin/azurite-blob is missing (a fresh clone)."""
    with start_azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server
