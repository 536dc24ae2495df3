"""The session's fake-gcs-server (root conftest.py); a fresh bucket for each test.

fake-gcs-server checks `ifGenerationMatch=0` on uploads and serves old
generations as gone, like Google's service.
"""

from __future__ import annotations

import pytest
from stashflow_test_clouds import Gcs


@pytest.fixture(scope="session")
def gcs(gcs_server) -> Gcs:
    return Gcs(gcs_server)


@pytest.fixture
def bucket(gcs) -> str:
    return gcs.bucket()


@pytest.fixture
def backend(gcs, bucket):
    """A fresh, empty GcsBucket (the conformance-kit fixture name)."""
    return gcs.backend(bucket, "results/v1")
