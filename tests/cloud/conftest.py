"""The three real storage servers, once per session, for flows run end to end on each.

Each `cloud` parameter gives: a fresh bucket/container, the CLI arguments that
save a block for it, and an environment for child processes.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

# Before gcsfs is imported (see ../../../shared/SERVERS.md): no gRPC bucket probe,
# and no look-up of Google's metadata server off loopback.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
os.environ.setdefault("NO_GCE_CHECK", "true")
os.environ.setdefault("GCE_METADATA_HOST", "127.0.0.1:9")
os.environ.setdefault("GCE_METADATA_IP", "127.0.0.1:9")

import pytest
from stashflow._servers import start_azurite, start_moto, start_server


@dataclass
class Cloud:
    type_slug: str
    fields: dict[str, str]  # block fields, as `block create --set` takes them
    folder: str
    env: dict[str, str] = field(default_factory=dict)
    names: object = None  # () -> sorted raw object names in the bucket

    def set_args(self) -> list[str]:
        return [arg for k, v in self.fields.items() for arg in ("--set", f"{k}={v}")]


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory):
    with start_moto(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture(scope="session")
def gcs(tmp_path_factory):
    with start_server("fake-gcs-server", tmp_path_factory.mktemp("gcs")) as server:
        yield server


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    with start_azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


def _s3(request) -> Cloud:
    import s3fs

    url = request.getfixturevalue("moto_url")
    bucket = f"sf-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(key="testing", secret="testing-secret", endpoint_url=url,
                           skip_instance_cache=True, use_listings_cache=False)
    fs.mkdir(bucket)
    return Cloud("s3-bucket", {"bucket_name": bucket, "bucket_folder": "runs", "endpoint_url": url,
                               "aws_access_key_id": "testing",
                               "aws_secret_access_key": "testing-secret"},
                 "runs", {"AWS_EC2_METADATA_DISABLED": "true"},
                 lambda: sorted(p.split("/", 1)[1] for p in fs.find(bucket)))


def _gcs(request) -> Cloud:
    server = request.getfixturevalue("gcs")
    client = server.client()
    bucket = f"sf-{uuid.uuid4().hex[:12]}"
    client.mkdir(bucket)
    return Cloud("gcs-bucket", {"bucket": bucket, "bucket_folder": "runs",
                                "endpoint_url": server.url, "token": "anon"}, "runs", {},
                 lambda: sorted(p.split("/", 1)[1] for p in client.find(bucket)))


def _azure(request) -> Cloud:
    server = request.getfixturevalue("azurite")
    container = f"sf-{uuid.uuid4().hex[:12]}"
    server.client().create_container(container)
    return Cloud("azure-blob-storage", {"container_name": container, "blob_folder": "runs",
                                        "connection_string": server.connection_string},
                 "runs", {}, lambda: server.names(container))


@pytest.fixture(params=["s3", "gcs", "azure"])
def cloud(request) -> Cloud:
    modules = {"s3": "stashflow_s3", "gcs": "stashflow_gcs", "azure": "stashflow_azure"}
    pytest.importorskip(modules[request.param])
    return {"s3": _s3, "gcs": _gcs, "azure": _azure}[request.param](request)
