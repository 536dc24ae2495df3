"""S3Bucket passes the plugin authors' kit against the moto server of conftest.py."""

from stashflow.testing import StorageBackendTests


class TestS3Bucket(StorageBackendTests):
    """`backend` (a fresh bucket under a folder) comes from conftest.py."""
