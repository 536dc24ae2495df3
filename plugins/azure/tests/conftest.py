"""Azurite (the Azure Storage emulator, from npm) on loopback for the session.

The repository's package.json pins azurite; if node_modules/.bin/azurite-blob is
missing the fixture runs `npm ci` first, so a fresh clone works. Each test gets
a fresh container.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from stashflow._servers import Azurite, start_azurite


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
