"""The session's Azurite (root conftest.py); a fresh container for each test."""

from __future__ import annotations

import pytest
from stashflow_test_clouds import Azure


@pytest.fixture(scope="session")
def azure(azurite) -> Azure:
    return Azure(azurite)


@pytest.fixture
def container(azure) -> str:
    return azure.bucket()


@pytest.fixture
def backend(azure, container):
    """A fresh, empty AzureBlobStorageContainer (the conformance-kit fixture name)."""
    return azure.backend(container, "results/v1")
