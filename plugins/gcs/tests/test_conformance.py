"""GcsBucket passes the plugin authors' kit against the GCS emulator of conftest.py."""

from stashflow.testing import StorageBackendTests


class TestGcsBucket(StorageBackendTests):
    """`backend` (a fresh bucket under a folder) comes from conftest.py."""
