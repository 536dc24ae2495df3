"""The FTP backend passes stashflow's conformance kit: a fixture is all it supplies."""

import pytest
from stashflow.testing import StorageBackendTests


class TestFtpStorage(StorageBackendTests):
    @pytest.fixture
    def backend(self, ftp_storage):
        return ftp_storage
