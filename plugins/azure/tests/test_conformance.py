"""AzureBlobStorageContainer passes the plugin authors' kit against Azurite (conftest.py)."""

from stashflow.testing import StorageBackendTests


class TestAzureBlobStorageContainer(StorageBackendTests):
    """`backend` (a fresh container under a folder) comes from conftest.py."""
