"""Faults: a refused request, a stopped server, a server killed in the middle of a write."""

from __future__ import annotations

import io
import os
import signal
import threading

import pytest
from stashflow import ResultStore
from stashflow.exceptions import StorageError
from stashflow_gcs import PART_BYTES, GcsBucket


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


def test_missing_bucket_is_a_storage_error_naming_backend_and_key(gcs_server):
    backend = GcsBucket(bucket="no-such-bucket", endpoint_url=gcs_server.url, token="anon")
    with pytest.raises(StorageError, match=r"gcs-bucket: could not write "
                       r"gs://no-such-bucket/k/1: bucket 'no-such-bucket' does not exist"):
        backend.write("k/1", b"x")
    with pytest.raises(StorageError, match="gs://no-such-bucket/k/2"):
        backend.write("k/2", io.BytesIO(b"x"))


def test_a_stopped_server_gives_storage_errors_naming_backend_and_key(start_gcs_server):
    with start_gcs_server("fake-gcs-server") as server:
        server.client().mkdir("doomed")
        backend = GcsBucket(bucket="doomed", bucket_folder="f", endpoint_url=server.url,
                            token="anon")
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

    # gcsfs retries a refused connection for ~30 s; the calls wait out their retries together.
    threads = [threading.Thread(target=call, args=(name,)) for name in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for name, exc in errors.items():
        assert isinstance(exc, StorageError), (name, exc)
        assert "gcs-bucket: could not " in str(exc)
        assert f"gs://doomed/f/k/{name}" in str(exc), str(exc)


def test_a_server_killed_mid_write_leaves_the_old_record(start_gcs_server, tmp_path):
    """SIGKILL the server after one part of a streamed write; restart it on its data."""
    data, gate = tmp_path / "objects", threading.Event()
    with start_gcs_server("fake-gcs-server", data_dir=data) as server:
        server.client().mkdir("durable")
        backend = GcsBucket(bucket="durable", endpoint_url=server.url, token="anon")
        store = ResultStore(backend)
        store.write("k", "the old value")
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
        assert producer.waiting.wait(30)  # two parts are up; the upload is open
        os.killpg(server.process.proc.pid, signal.SIGKILL)
        server.process.proc.wait(10)
        port = int(server.url.rsplit(":", 1)[1])
    with start_gcs_server("fake-gcs-server", port=port, data_dir=data):
        gate.set()
        writer.join(120)
        assert isinstance(outcome[0], StorageError), outcome
        assert str(outcome[0]).startswith(
            "gcs-bucket: could not write gs://durable/k: the server no longer knows the upload")
        assert store.read("k") == "the old value"
        assert list(backend.list()) == ["k"]
