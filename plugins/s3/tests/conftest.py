"""A real moto S3 server on 127.0.0.1 for the whole session, emptied before each test.

Tests talk to it through s3fs/botocore exactly as they would talk to AWS. The
environment points the AWS default chain at it (keys and AWS_ENDPOINT_URL_S3),
so `s3://bucket/prefix` URLs and blocks without credentials reach it too.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import urllib.request
import uuid

import pytest
from stashflow._servers import start_moto

KEY_ID = "testing"
SECRET = "testing-secret-value"


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory) -> str:
    with start_moto(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture(autouse=True)
def aws_env(moto_endpoint, monkeypatch) -> str:
    """The AWS default chain points at moto; the server starts each test empty."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    reset = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()
    return moto_endpoint


@pytest.fixture
def raw(moto_endpoint):
    """A plain boto3 client on the server: to look at the real objects behind the backend."""
    import boto3

    return boto3.client("s3", endpoint_url=moto_endpoint, aws_access_key_id=KEY_ID,
                        aws_secret_access_key=SECRET, region_name="us-east-1")


@pytest.fixture
def bucket(raw) -> str:
    name = f"bkt-{uuid.uuid4().hex[:12]}"
    raw.create_bucket(Bucket=name)
    return name


@pytest.fixture
def backend(bucket, moto_endpoint):
    """A fresh, empty S3Bucket (explicit endpoint and credentials) under a folder."""
    from stashflow_s3 import S3Bucket

    return S3Bucket(bucket_name=bucket, bucket_folder="team/results",
                    endpoint_url=moto_endpoint, aws_access_key_id=KEY_ID,
                    aws_secret_access_key=SECRET)


def object_keys(raw, bucket: str) -> list[str]:
    pages = raw.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))


@pytest.fixture
def keys_in(raw):
    """keys_in(bucket) -> every object key really stored in the bucket."""
    return lambda bucket: object_keys(raw, bucket)


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
def proxy(moto_endpoint):
    """proxy(cut_after_up=None) -> a Proxy in front of the moto server."""
    made: list[Proxy] = []
    port = int(moto_endpoint.rsplit(":", 1)[1])

    def make(cut_after_up: int | None = None) -> Proxy:
        made.append(Proxy(port, cut_after_up))
        return made[-1]

    yield make
    for p in made:
        p.kill()
