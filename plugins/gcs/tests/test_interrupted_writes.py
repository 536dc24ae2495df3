"""The server killed in the middle of a resumable upload: the old record stays."""

from __future__ import annotations

import io
import threading

from stashflow import ResultStore
from stashflow.exceptions import StorageError
from stashflow_gcs import PART_BYTES, GcsBucket
from stashflow_test_io import Attempt, Gated
from stashflow_test_servers import start_gcs_server


def test_a_server_killed_mid_write_leaves_the_old_record(tmp_path):
    """SIGKILL the server after two parts of a streamed write; restart it on its data."""
    data, gate = tmp_path / "objects", threading.Event()
    with start_gcs_server(tmp_path, data_dir=data) as server:
        server.client().mkdir("durable")
        backend = GcsBucket(bucket="durable", endpoint_url=server.url, token="anon")
        store = ResultStore(backend)
        store.write("k", "the old value")
        producer = Gated(first=2 * PART_BYTES, total=4 * PART_BYTES, gate=gate)
        writer = Attempt(lambda: backend.write("k", io.BufferedReader(producer, PART_BYTES)))
        assert producer.waiting.wait(30)  # two parts are up; the upload is open
        server.kill()
    with start_gcs_server(tmp_path, port=server.port, data_dir=data):
        gate.set()
        writer.join(120)
        assert isinstance(writer.outcome, StorageError), writer.outcome
        assert str(writer.outcome).startswith(
            "gcs-bucket: could not write gs://durable/k: the server no longer knows the upload")
        assert store.read("k") == "the old value"
        assert list(backend.list()) == ["k"]
