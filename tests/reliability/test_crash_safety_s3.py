"""The crash test, smaller, on an S3 server (moto on loopback).

A forked child persists 6-20 MiB values (one PUT, or a multipart upload past
8 MiB) and is SIGKILLed at random moments. Afterwards every key loads a whole
value at least as new as its last acknowledged write, or is a clean miss, and
the bucket holds nothing but records: a killed multipart upload is invisible.
"""

from __future__ import annotations

import os
import random
import select
import signal
import time
import uuid

import pytest

pytest.importorskip("moto")
pytest.importorskip("stashflow_s3")

from stashflow.exceptions import ResultNotFound
from stashflow.results import ResultStore
from stashflow_test_servers import start_moto

KEYS = ("one", "two/three")
KILLS = 12
MiB = 1024 * 1024
KEY_ID, SECRET = "testing", "testing-secret"


def blob(key: str, version: int, size: int) -> bytes:
    block = random.Random(f"{key}:{version}").randbytes(64 * 1024)
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with start_moto(tmp_path_factory.mktemp("moto")) as server:
        yield server.url


@pytest.fixture
def bucket(moto):
    import boto3

    client = boto3.client("s3", endpoint_url=moto, aws_access_key_id=KEY_ID,
                          aws_secret_access_key=SECRET, region_name="us-east-1")
    name = f"crash-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=name)
    return client, name


def _backend(moto: str, bucket: str):
    from stashflow_s3 import S3Bucket

    return S3Bucket(bucket_name=bucket, bucket_folder="results", endpoint_url=moto,
                    aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)


def _child(moto: str, bucket: str, first: int, ack_fd: int, seed: int) -> None:
    rng = random.Random(seed)
    store = ResultStore(_backend(moto, bucket), serializer="pickle")
    version = first
    while True:
        key = KEYS[version % len(KEYS)]
        size = rng.randint(6 * MiB, 20 * MiB)
        store.write(key, (key, version, size, blob(key, version, size)))
        os.write(ack_fd, f"{key} {version}\n".encode())
        version += 1


def _settled(client, bucket: str) -> list[dict]:
    """The bucket's objects once two listings 0.15 s apart agree (at most ~2.5 s)."""
    def listing():
        return [(o["Key"], o["ETag"]) for o in
                client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    before = listing()
    for _ in range(16):
        time.sleep(0.15)
        now = listing()
        if now == before:
            break
        before = now
    return client.list_objects_v2(Bucket=bucket).get("Contents", [])


def test_sigkilled_s3_writers_leave_whole_records_or_misses(moto, bucket):
    client, name = bucket
    store = ResultStore(_backend(moto, name))
    rng = random.Random()
    acked: dict[str, int] = {}
    for kill in range(KILLS):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(read_fd)
            try:
                _child(moto, name, kill * 1000, write_fd, rng.getrandbits(32))
            finally:
                os._exit(1)
        os.close(write_fd)
        acks = b""
        if kill % 3 == 2:  # let at least one write finish, then kill during a later one
            ready, _, _ = select.select([read_fd], [], [], 60)
            assert ready, "the child wrote nothing in 60 s"
            acks = os.read(read_fd, 65536)
        time.sleep(rng.uniform(0.05, 0.8))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        while chunk := os.read(read_fd, 65536):
            acks += chunk
        os.close(read_fd)
        for line in acks.decode().splitlines():
            key, version = line.split()
            acked[key] = max(acked.get(key, -1), int(version))

        # A request the child had fully sent can still complete on the server after the
        # kill (the object then appears whole): wait until the bucket is quiet.
        objects = _settled(client, name)
        assert sorted(o["Key"] for o in objects) == sorted(f"results/{k}" for k in store.list())
        assert set(store.list()) <= set(KEYS)
        for key in KEYS:
            try:
                got_key, version, size, data = store.read(key)
            except ResultNotFound:
                assert key not in acked
                continue
            assert got_key == key and version >= acked.get(key, -1)
            assert version < (kill + 1) * 1000
            assert data == blob(key, version, size)
    assert acked, "no write completed before a kill"


def test_no_key_writes_outside_the_bucket_folder_and_gc_works_on_s3(moto, bucket):
    """Hostile keys on S3: refused, or stored exactly under the bucket folder (and gc'able)."""
    from _hostile import KEYS as HOSTILE_KEYS
    from hypothesis import HealthCheck, given, settings
    from stashflow.exceptions import InvalidResultKey

    client, name = bucket
    store = ResultStore(_backend(moto, name), serializer="json")

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(key=HOSTILE_KEYS)
    def write_one(key):
        try:
            store.write(key, 1, expiration=-1)
        except InvalidResultKey:
            return
        found = [o["Key"] for o in client.list_objects_v2(Bucket=name).get("Contents", [])]
        assert f"results/{key}" in found
        assert all(k.startswith("results/") for k in found), found

    write_one()
    stored = sorted(store.list())
    found = sorted(o["Key"] for o in client.list_objects_v2(Bucket=name).get("Contents", []))
    assert found == [f"results/{k}" for k in stored]
    assert sorted(r.key for r in store.records()) == stored
    report = store.gc()  # every record written here is already expired
    assert sorted(report.removed) == stored
    assert client.list_objects_v2(Bucket=name).get("KeyCount") == 0
