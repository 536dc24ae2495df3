"""LocalFileSystem passes the plugin authors' kit (with and without fsync)."""

import pytest
from stashflow.testing import StorageBackendTests
from stashflow_local import LocalFileSystem


class TestLocalFileSystem(StorageBackendTests):
    @pytest.fixture
    def backend(self, tmp_path):
        return LocalFileSystem(basepath=str(tmp_path / "results"))


class TestLocalFileSystemWithFsync(StorageBackendTests):
    large_value_size = 16 * 1024 * 1024

    @pytest.fixture
    def backend(self, tmp_path):
        return LocalFileSystem(basepath=str(tmp_path / "results"), fsync=True)
