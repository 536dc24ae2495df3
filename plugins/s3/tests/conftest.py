"""The session's moto server (root conftest.py), emptied before each test; a Proxy to it.

Tests talk to it through s3fs/botocore exactly as they would talk to AWS. The
environment points the AWS default chain at it (keys and AWS_ENDPOINT_URL_S3),
so `s3://bucket/prefix` URLs and blocks without credentials reach it too.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.request

import pytest
from stashflow_test_clouds import S3


@pytest.fixture(scope="session")
def s3(moto_server) -> S3:
    return S3(moto_server)


@pytest.fixture(autouse=True)
def aws_env(s3, monkeypatch) -> str:
    """The AWS default chain points at moto; the server starts each test empty."""
    s3.set_env(monkeypatch)
    reset = urllib.request.Request(f"{s3.server.url}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()
    return s3.server.url


@pytest.fixture
def raw(s3):
    """A plain boto3 client on the server: to look at the real objects behind the backend."""
    return s3.raw


@pytest.fixture
def bucket(s3) -> str:
    return s3.bucket()


@pytest.fixture
def backend(s3, bucket):
    """A fresh, empty S3Bucket (explicit endpoint and credentials) under a folder."""
    return s3.backend(bucket, "team/results")


class Proxy:
    """A TCP relay to the moto server that counts bytes and can die on demand.

    `down` counts server->client bytes (what a client downloads), `up` the
    client->server bytes. With `cut_after_up`, the relay kills every connection and
    stops listening once that many bytes went up: the server vanishes mid-request.
    """

    def __init__(self, target_port: int, cut_after_up: int | None = None):
        self.target_port = target_port
        self.cut_after_up = cut_after_up
        self.up = 0
        self.down = 0
        self.dead = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.dead.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "down"), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                with self._lock:
                    setattr(self, direction, getattr(self, direction) + len(data))
                    over = (direction == "up" and self.cut_after_up is not None
                            and self.up > self.cut_after_up)
                if over:
                    self.kill()
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def reset_counts(self) -> None:
        with self._lock:
            self.up = self.down = 0

    def kill(self) -> None:
        """Close the listener and every connection: the endpoint is gone."""
        self.dead.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def proxy(moto_server):
    """proxy(cut_after_up=None) -> a Proxy in front of the moto server."""
    made: list[Proxy] = []

    def make(cut_after_up: int | None = None) -> Proxy:
        made.append(Proxy(moto_server.port, cut_after_up))
        return made[-1]

    yield make
    for p in made:
        p.kill()
