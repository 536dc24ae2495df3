"""Azurite killed in the middle of a staged write: never a torn blob."""

from __future__ import annotations

import io
import threading
import time

from stashflow import ResultStore
from stashflow.exceptions import StorageError
from stashflow_azure import PART_BYTES, AzureBlobStorageContainer
from stashflow_test_io import Attempt, Gated
from stashflow_test_servers import start_azurite

AZURITE_SAVES_EVERY = 5.0  # seconds: LokiBlobMetadataStore's autosaveInterval in Azurite 3.35


def test_a_server_killed_mid_write_leaves_no_torn_record(tmp_path):
    """SIGKILL Azurite after two blocks of a streamed write; restart it on its data."""
    data, gate = tmp_path / "blobs", threading.Event()
    with start_azurite(tmp_path / "azurite", location=data) as server:
        server.client().create_container("durable")
        backend = AzureBlobStorageContainer(container_name="durable",
                                            connection_string=server.connection_string)
        store = ResultStore(backend)
        store.write("k", "the old value")
        time.sleep(AZURITE_SAVES_EVERY + 0.5)  # Azurite writes its index to disk every 5 s
        producer = Gated(first=2 * PART_BYTES, total=4 * PART_BYTES, gate=gate)
        writer = Attempt(lambda: backend.write("k", io.BufferedReader(producer, PART_BYTES)))
        assert producer.waiting.wait(30)  # two blocks are staged; nothing is committed
        server.kill()
    with start_azurite(tmp_path / "azurite", port=server.port, location=data):
        started = time.monotonic()
        gate.set()
        writer.join(120)
        # Either the write failed (its staged blocks died with the server) and the old
        # record is intact, or Azurite had saved the staged blocks and the whole new
        # value landed. Never a torn record.
        if writer.outcome is None:
            assert backend.read("k") == b"n" * (4 * PART_BYTES)
        else:
            assert isinstance(writer.outcome, StorageError), writer.outcome
            assert str(writer.outcome).startswith(
                "azure-blob-storage: could not write az://durable/k:")
            assert store.read("k") == "the old value"
        print(f"the writer finished {time.monotonic() - started:.1f} s after the restart: "
              f"{writer.outcome!r}")
