"""The three cloud backends as the tests see them, one class each, on a running server.

A `Cloud` knows its block type and URL schemes, makes fresh buckets and
backends on its server, names the block fields that hold secrets, and looks at
the raw objects behind the backend's back. tests/cloud runs one suite over the
three (its `cloud` fixture); the plugins' own tests use the one they test.
The functions at the end check the credentials blocks (prefect-aws, -gcp and
-azure's) the same way for the three plugins.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import json
import os
import pickle
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from stashflow_test_servers import (
    ACCOUNT_KEY,
    Azurite,
    GcsServer,
    Server,
    start_azurite,
    start_gcs_server,
    start_moto,
)

S3_KEY_ID = "testing"
S3_SECRET = "testing-secret-value"


class Cloud(abc.ABC):
    name: ClassVar[str]
    type_slug: ClassVar[str]  # the block type
    schemes: ClassVar[tuple[str, ...]]  # URL schemes, the canonical one first
    bucket_field: ClassVar[str]
    folder_field: ClassVar[str]
    secret_field: ClassVar[str]  # a block field that holds a secret
    secret: ClassVar[str]  # the credential in `credentials` that nothing may show
    client_modules: ClassVar[tuple[str, ...]]  # imported on first use, never with the plugin

    def __init__(self, server: Server):
        self.server = server

    @classmethod
    @abc.abstractmethod
    def start(cls, log_dir: Path) -> contextlib.AbstractContextManager[Cloud]:
        """A cloud on a server of its own (to stop or kill), until the block ends."""

    @property
    @abc.abstractmethod
    def credentials(self) -> dict[str, str]:
        """Block fields that reach this server: endpoint, keys."""

    @property
    @abc.abstractmethod
    def env(self) -> dict[str, str | None]:
        """Environment variables that make a URL (a block without credentials) reach it."""

    @abc.abstractmethod
    def bucket(self, name: str | None = None) -> str:
        """A new, empty bucket (container)."""

    @abc.abstractmethod
    def names(self, bucket: str) -> list[str]:
        """Every object name really stored in the bucket, sorted."""

    @abc.abstractmethod
    def put_raw(self, bucket: str, name: str, data: bytes) -> None:
        """An object stored without the backend, as another tool would."""

    @abc.abstractmethod
    def delete_raw(self, bucket: str, name: str) -> None:
        """An object deleted without the backend."""

    @abc.abstractmethod
    def names_of_buckets(self) -> list[str]:
        """Every bucket (container) on the server."""

    @property
    def backend_class(self) -> type:
        from stashflow.registry import get_registry

        return get_registry().storage_types[self.type_slug]

    def fields(self, bucket: str, folder: str = "") -> dict[str, str]:
        return {self.bucket_field: bucket, self.folder_field: folder, **self.credentials}

    def backend(self, bucket: str, folder: str = "", **fields: Any):
        return self.backend_class(**{**self.fields(bucket, folder), **fields})

    def url(self, bucket: str, path: str = "") -> str:
        return f"{self.schemes[0]}://{bucket}/{path}" if path else f"{self.schemes[0]}://{bucket}"

    def set_env(self, monkeypatch) -> None:
        for name, value in self.env.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)


class S3(Cloud):
    name, type_slug, schemes = "s3", "s3-bucket", ("s3",)
    bucket_field, folder_field, secret_field = "bucket_name", "bucket_folder", "aws_secret_access_key"
    secret = S3_SECRET
    client_modules = ("s3fs", "botocore", "aiobotocore", "aiohttp")

    @classmethod
    @contextlib.contextmanager
    def start(cls, log_dir: Path) -> Iterator[S3]:
        with start_moto(log_dir) as server:
            yield cls(server)

    @property
    def credentials(self) -> dict[str, str]:
        return {"endpoint_url": self.server.url, "aws_access_key_id": S3_KEY_ID,
                "aws_secret_access_key": S3_SECRET}

    @property
    def env(self) -> dict[str, str | None]:
        return {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
                "AWS_ENDPOINT_URL_S3": self.server.url, "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_PROFILE": None,
                "AWS_DEFAULT_REGION": None, "AWS_REGION": None, "AWS_SESSION_TOKEN": None}

    @functools.cached_property
    def raw(self):
        """A plain boto3 client on the server."""
        import boto3

        return boto3.client("s3", endpoint_url=self.server.url, aws_access_key_id=S3_KEY_ID,
                            aws_secret_access_key=S3_SECRET, region_name="us-east-1")

    def bucket(self, name: str | None = None) -> str:
        name = name or f"bkt-{uuid.uuid4().hex[:12]}"
        self.raw.create_bucket(Bucket=name)
        return name

    def names(self, bucket: str) -> list[str]:
        pages = self.raw.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))

    def put_raw(self, bucket: str, name: str, data: bytes) -> None:
        self.raw.put_object(Bucket=bucket, Key=name, Body=data)

    def delete_raw(self, bucket: str, name: str) -> None:
        self.raw.delete_object(Bucket=bucket, Key=name)

    def names_of_buckets(self) -> list[str]:
        return [b["Name"] for b in self.raw.list_buckets()["Buckets"]]


class Gcs(Cloud):
    name, type_slug, schemes = "gcs", "gcs-bucket", ("gs", "gcs")
    bucket_field, folder_field, secret_field = "bucket", "bucket_folder", "token"
    secret = "anon"  # the emulator takes no credential: the token field is what is masked
    client_modules = ("gcsfs", "google", "aiohttp")
    server: GcsServer

    @functools.cached_property
    def raw(self):
        """A plain gcsfs client on the server."""
        return self.server.client()

    @classmethod
    @contextlib.contextmanager
    def start(cls, log_dir: Path) -> Iterator[Gcs]:
        with start_gcs_server(log_dir) as server:
            yield cls(server)

    @property
    def credentials(self) -> dict[str, str]:
        return {"endpoint_url": self.server.url, "token": "anon"}

    @property
    def env(self) -> dict[str, str | None]:
        return {"STORAGE_EMULATOR_HOST": self.server.url}

    def bucket(self, name: str | None = None) -> str:
        name = name or f"stashflow-{uuid.uuid4().hex[:12]}"
        self.raw.mkdir(name)
        return name

    def names(self, bucket: str) -> list[str]:
        return sorted(p.split("/", 1)[1] for p in self.raw.find(bucket))

    def put_raw(self, bucket: str, name: str, data: bytes) -> None:
        self.raw.pipe_file(f"{bucket}/{name}", data)

    def delete_raw(self, bucket: str, name: str) -> None:
        self.raw.rm_file(f"{bucket}/{name}")

    def names_of_buckets(self) -> list[str]:
        self.raw.invalidate_cache()
        return [p.rstrip("/") for p in self.raw.ls("")]

    @staticmethod
    def service_account_key() -> dict[str, str]:
        """A service account key (a fresh RSA key) that google-auth accepts; no service knows it."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": "stashflow-tests",
                "private_key_id": uuid.uuid4().hex, "private_key": pem,
                "client_email": "results-writer@stashflow-tests.iam.gserviceaccount.com",
                "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}


class Azure(Cloud):
    name, type_slug, schemes = "azure", "azure-blob-storage", ("az", "abfs")
    bucket_field, folder_field, secret_field = "container_name", "blob_folder", "account_key"
    secret = ACCOUNT_KEY
    client_modules = ("adlfs", "azure", "aiohttp")
    server: Azurite

    @functools.cached_property
    def raw(self):
        """azure-storage-blob's plain (sync) client on the server."""
        return self.server.client()

    @classmethod
    @contextlib.contextmanager
    def start(cls, log_dir: Path) -> Iterator[Azure]:
        with start_azurite(log_dir) as server:
            yield cls(server)

    @property
    def credentials(self) -> dict[str, str]:
        return {"connection_string": self.server.connection_string}

    @property
    def env(self) -> dict[str, str | None]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.server.connection_string}

    def bucket(self, name: str | None = None) -> str:
        name = name or f"stashflow-{uuid.uuid4().hex[:12]}"
        self.raw.create_container(name)
        return name

    def names(self, bucket: str) -> list[str]:
        return sorted(b.name for b in self.raw.get_container_client(bucket).list_blobs())

    def put_raw(self, bucket: str, name: str, data: bytes) -> None:
        self.raw.get_container_client(bucket).upload_blob(name, data)

    def delete_raw(self, bucket: str, name: str) -> None:
        self.raw.get_container_client(bucket).delete_blob(name)

    def names_of_buckets(self) -> list[str]:
        return [c.name for c in self.raw.list_containers()]


CLOUDS: dict[str, type[Cloud]] = {cls.name: cls for cls in (S3, Gcs, Azure)}


# -- credentials blocks ------------------------------------------------------------------


def cli(*args: str) -> str:
    """`stashflow ARGS`, in this process; it must succeed. Its output."""
    from click.testing import CliRunner
    from stashflow.cli import main

    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def saved_file(slug: str) -> str:
    """The text of the block file saved as `slug`, checked to be private (mode 0600)."""
    from stashflow.blocks import block_path

    path = block_path(*slug.split("/"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return path.read_text()


def check_round_trip(cloud: Cloud, bucket: str, folder: str, storage: Any) -> None:
    """A record written through `storage` (a block or a slug) is the object `folder/key` and
    reads back, also through a pickled copy of the block (as a Dask worker gets it)."""
    from stashflow import ResultStore

    store = ResultStore(storage)
    key = f"via-credentials/{uuid.uuid4().hex[:8]}"
    store.write(key, {"rows": 7})
    assert (f"{folder}/{key}" if folder else key) in cloud.names(bucket)
    copy = pickle.loads(pickle.dumps(store.storage))
    assert copy == store.storage
    assert ResultStore(copy).read(key) == {"rows": 7}


def check_saved_by_reference(slug: str, field: str, credentials_slug: str, secret: str) -> None:
    """The storage block saved as `slug` names its credentials by slug in `field` and holds
    no secret; the credentials' own file holds it; `block inspect` shows neither."""
    assert json.loads(saved_file(slug))["fields"][field] == credentials_slug
    assert secret not in saved_file(slug)
    assert secret in saved_file(credentials_slug)
    assert f"{field} = {credentials_slug}" in cli("block", "inspect", slug)
    shown = cli("block", "inspect", credentials_slug)
    assert secret not in shown and "**********" in shown


def check_cli(credentials: tuple[str, dict[str, str]], storage: tuple[str, dict[str, str]],
              field: str, secret: str) -> None:
    """`stashflow block create` the credentials (slug, fields), then the storage block
    (slug, fields) naming them by slug in `field`; `block ls` lists both."""
    (credentials_slug, credentials_fields), (slug, fields) = credentials, storage

    def sets(values: dict[str, str]) -> list[str]:
        return [part for name, value in values.items() for part in ("--set", f"{name}={value}")]

    assert secret not in cli("block", "create", *credentials_slug.split("/"), *sets(credentials_fields))
    cli("block", "create", *slug.split("/"), *sets({**fields, field: credentials_slug}))
    assert {credentials_slug, slug} <= set(cli("block", "ls").split())
    check_saved_by_reference(slug, field, credentials_slug, secret)


def check_not_storage(credentials: Any) -> None:
    """A credentials block is a block type, but not storage: using it as such says so, and
    it is not among the storage classes (stashflow.filesystems)."""
    import pytest
    import stashflow.filesystems
    from stashflow import ResultStore
    from stashflow.exceptions import StorageNotFound

    with pytest.raises(TypeError, match=f"{credentials.type_slug} is a block, not storage"):
        ResultStore(credentials)
    with pytest.raises(StorageNotFound, match=f"is a {credentials.type_slug} block, not storage"):
        ResultStore(f"{credentials.type_slug}/anything")
    assert type(credentials).__name__ not in dir(stashflow.filesystems)
