"""Faults: a refused request, a stopped server, a server killed in the middle of a write."""

from __future__ import annotations

import io
import os
import signal
import threading
import time

import pytest
from stashflow import ResultStore
from stashflow.exceptions import StorageError
from stashflow_azure import PART_BYTES, AzureBlobStorageContainer

AZURITE_SAVES_EVERY = 5.0  # seconds: LokiBlobMetadataStore's autosaveInterval in Azurite 3.35


class Gated(io.RawIOBase):
    """`first` bytes at once, then the rest only after `gate` is set: a slow producer."""

    def __init__(self, first: int, total: int, gate: threading.Event):
        self.first, self.left, self.gate = first, total, gate
        self.waiting = threading.Event()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.first <= 0 and not self.gate.is_set():
            self.waiting.set()
            self.gate.wait(30)
        n = min(len(buffer), self.left, self.first if self.first > 0 else len(buffer))
        buffer[:n] = b"n" * n
        self.left -= n
        self.first -= n
        return n


def test_a_missing_container_is_a_storage_error_naming_backend_and_key(azurite):
    backend = AzureBlobStorageContainer(container_name="no-such-container",
                                        connection_string=azurite.connection_string)
    message = ("azure-blob-storage: could not {} az://no-such-container/k/1: "
               "container 'no-such-container' does not exist")
    with pytest.raises(StorageError, match=message.format("write")):
        backend.write("k/1", b"x")
    with pytest.raises(StorageError, match=message.format("read")):
        backend.read("k/1")
    with pytest.raises(StorageError, match=message.format("check")):
        backend.exists("k/1")


def test_a_refused_request_is_a_storage_error_without_the_secret(azurite, container):
    wrong = azurite.connection_string.replace("AccountKey=Eby8", "AccountKey=AAAA")
    backend = AzureBlobStorageContainer(container_name=container, connection_string=wrong)
    with pytest.raises(StorageError) as caught:
        backend.write("k", b"x")
    assert str(caught.value).startswith(f"azure-blob-storage: could not write az://{container}/k:")
    assert "AuthorizationFailure" in str(caught.value) or "AuthenticationFailed" in str(
        caught.value), str(caught.value)
    assert "AAAA" not in str(caught.value)
    assert not AzureBlobStorageContainer(container_name=container,
                                         connection_string=azurite.connection_string).exists("k")


@pytest.mark.slow
def test_a_stopped_server_gives_storage_errors_naming_backend_and_key(start_azurite_server):
    with start_azurite_server() as server:
        server.client().create_container("doomed")
        backend = AzureBlobStorageContainer(container_name="doomed", blob_folder="f",
                                            connection_string=server.connection_string)
        backend.write("before", b"1")
    store = ResultStore(backend)
    calls = {
        "read": lambda: backend.read("k/read"),
        "open_read": lambda: backend.open_read("k/open_read"),
        "write": lambda: backend.write("k/write", b"x"),
        "exists": lambda: backend.exists("k/exists"),
        "list": lambda: list(backend.list("k/list")),
        "store-write": lambda: store.write("k/store-write", 1),
    }
    errors: dict[str, BaseException | None] = {}

    def call(name: str) -> None:
        try:
            calls[name]()
            errors[name] = None
        except BaseException as exc:
            errors[name] = exc

    # azure-storage-blob retries a refused connection 3 times with 15 s+ back-offs.
    threads = [threading.Thread(target=call, args=(name,)) for name in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for name, exc in errors.items():
        assert isinstance(exc, StorageError), (name, exc)
        assert "azure-blob-storage: could not " in str(exc)
        assert f"az://doomed/f/k/{name}" in str(exc), str(exc)


def test_a_server_killed_mid_write_leaves_no_torn_record(start_azurite_server, tmp_path):
    """SIGKILL Azurite after one block of a streamed write; restart it on its data."""
    data, gate = tmp_path / "blobs", threading.Event()
    with start_azurite_server(location=data) as server:
        server.client().create_container("durable")
        backend = AzureBlobStorageContainer(container_name="durable",
                                            connection_string=server.connection_string)
        store = ResultStore(backend)
        store.write("k", "the old value")
        time.sleep(AZURITE_SAVES_EVERY + 0.5)  # Azurite writes its index to disk every 5 s
        producer = Gated(first=2 * PART_BYTES, total=4 * PART_BYTES, gate=gate)
        outcome: list[BaseException | None] = []

        def write() -> None:
            try:
                backend.write("k", io.BufferedReader(producer, PART_BYTES))
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        assert producer.waiting.wait(30)  # two blocks are staged; nothing is committed
        os.killpg(server.process.proc.pid, signal.SIGKILL)
        server.process.proc.wait(10)
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    with start_azurite_server(port=port, location=data):
        started = time.monotonic()
        gate.set()
        writer.join(120)
        # Either the write failed (its staged blocks died with the server) and the old
        # record is intact, or Azurite had saved the staged blocks and the whole new
        # value landed. Never a torn record.
        if outcome[0] is None:
            assert backend.read("k") == b"n" * (4 * PART_BYTES)
        else:
            assert isinstance(outcome[0], StorageError), outcome
            assert str(outcome[0]).startswith(
                "azure-blob-storage: could not write az://durable/k:")
            assert store.read("k") == "the old value"
        print(f"the writer finished {time.monotonic() - started:.1f} s after the restart: "
              f"{outcome[0]!r}")
