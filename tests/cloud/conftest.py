"""One suite over S3, GCS and Azure: the `cloud` fixture is each in turn, on its real
server (root conftest.py), with a fresh bucket and a backend under a folder in it."""

from __future__ import annotations

import pytest
from stashflow_test_clouds import CLOUDS, Cloud

SERVERS = {"s3": "moto_server", "gcs": "gcs_server", "azure": "azurite"}


@pytest.fixture(scope="session", params=sorted(CLOUDS))
def cloud(request) -> Cloud:
    """A stashflow_test_clouds.Cloud: block type, backend factory, server, raw objects."""
    return CLOUDS[request.param](request.getfixturevalue(SERVERS[request.param]))


@pytest.fixture
def bucket(cloud) -> str:
    return cloud.bucket()


@pytest.fixture
def backend(cloud, bucket):
    """A fresh, empty backend under the folder results/v1."""
    return cloud.backend(bucket, "results/v1")
