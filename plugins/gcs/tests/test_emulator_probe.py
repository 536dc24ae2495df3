"""An emulator that ignores ifGenerationMatch=0 is found out, and create stays honest there."""

from __future__ import annotations

import pytest
from stashflow_gcs import GcsBucket
from stashflow_test_servers import start_gcs_server


def test_emulator_that_ignores_preconditions_is_detected(tmp_path):
    with start_gcs_server(tmp_path, "gcp-storage-emulator") as server:
        server.client().mkdir("lax")
        backend = GcsBucket(bucket="lax", endpoint_url=server.url, token="anon")
        with pytest.warns(RuntimeWarning, match="ignores ifGenerationMatch=0"):
            assert backend.create("k", b"first") is True
        assert backend.create("k", b"second") is False  # checked, then refused
        assert backend.read("k") == b"first"
        assert [n.rsplit("/", 1)[-1] for n in server.client().find("lax")] == ["k"]
