"""A real 2-worker Dask LocalCluster per session (plus fresh ones on demand); the storage
servers (moto, fake-gcs-server, Azurite) are the repository conftest's.

Workers are spawned processes: they import the task module `sfdask_tasks` from
this directory (put on their path), and get a STASHFLOW_HOME of their own with
no blocks or settings, so whatever reaches their storage travelled with the task.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
from stashflow_test_clouds import Azure, Gcs

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # spawned workers inherit sys.path

KEY_ID = "testing"
SECRET = "testing-secret-value"


def start_cluster(worker_home: Path, extra_env: dict | None = None, **kwargs):
    """A LocalCluster like the one the tests share: `kwargs` override its options."""
    from distributed import LocalCluster

    worker_home.mkdir(parents=True, exist_ok=True)
    env = {"STASHFLOW_HOME": str(worker_home), "AWS_EC2_METADATA_DISABLED": "true",
           # gcsfs: no gRPC probe no emulator answers, no look for Google's metadata server
           "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "NO_GCE_CHECK": "true",
           "GCE_METADATA_HOST": "127.0.0.1:9", "GCE_METADATA_IP": "127.0.0.1:9",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           **(extra_env or {})}
    options = {"n_workers": 2, "threads_per_worker": 1, "processes": True,
               "dashboard_address": "127.0.0.1:0", "host": "127.0.0.1",
               "local_directory": str(worker_home / "dask"), "env": env, **kwargs}
    return LocalCluster(**options)


@pytest.fixture(scope="session")
def worker_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("worker-home")


@pytest.fixture(scope="session")
def cluster(worker_home):
    """The session's cluster: 2 worker processes, 1 thread each."""
    c = start_cluster(worker_home)
    yield c
    c.close()


@pytest.fixture
def fresh_cluster(tmp_path):
    """fresh_cluster(extra_env=None, **options) -> a new LocalCluster, closed after the test."""
    made = []

    def make(extra_env: dict | None = None, **kwargs):
        made.append(start_cluster(tmp_path / f"worker-home-{len(made)}", extra_env, **kwargs))
        return made[-1]

    yield make
    for c in made:
        c.close()


@pytest.fixture(scope="session")
def client(cluster):
    """A client of the session cluster, for looking at workers (not used by flows)."""
    from distributed import Client

    with Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture
def log(tmp_path) -> str:
    """The file bodies append one line to per execution."""
    return str(tmp_path / "executions.log")


@pytest.fixture
def gcs(gcs_server):
    """A GcsBucket block on a fresh bucket of the emulator, with a lister of its objects."""
    cloud = Gcs(gcs_server)
    bucket = cloud.bucket(f"dask-{uuid.uuid4().hex[:12]}")
    return cloud.backend(bucket, "results", project="test"), lambda: cloud.names(bucket)


@pytest.fixture
def azure(azurite):
    """An AzureBlobStorageContainer block on a fresh container of Azurite, with its lister."""
    cloud = Azure(azurite)
    container = cloud.bucket(f"dask-{uuid.uuid4().hex[:12]}")
    return cloud.backend(container, "results"), lambda: cloud.names(container)


@pytest.fixture
def aws_keys() -> tuple[str, str]:
    """(access key id, secret key) that the moto server accepts."""
    return KEY_ID, SECRET


@pytest.fixture
def raw(moto_endpoint, monkeypatch):
    """A plain boto3 client on the server, to look at the objects really stored."""
    import boto3

    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return boto3.client("s3", endpoint_url=moto_endpoint, aws_access_key_id=KEY_ID,
                        aws_secret_access_key=SECRET, region_name="us-east-1")


@pytest.fixture
def s3(raw, moto_endpoint):
    """An S3Bucket block on a fresh bucket, with explicit endpoint and credentials."""
    from stashflow_s3 import S3Bucket

    bucket = f"dask-{uuid.uuid4().hex[:12]}"
    raw.create_bucket(Bucket=bucket)
    return S3Bucket(bucket_name=bucket, bucket_folder="results", endpoint_url=moto_endpoint,
                    aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)


def object_keys(raw, bucket: str) -> list[str]:
    pages = raw.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))


@pytest.fixture
def keys_in(raw):
    return lambda bucket: object_keys(raw, bucket)

