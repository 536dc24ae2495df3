"""Amazon S3 (and S3-compatible) result storage, on s3fs.

Every object operation is one S3 request (or a multipart upload) sent through
s3fs's client, so nothing depends on s3fs's listing cache. Writes are atomic
on the server: a plain PUT, or a multipart upload that becomes visible only
when it is completed (and is aborted on failure). `create` is a conditional
PUT (`If-None-Match: *`). Reads are ranged GETs pinned to the ETag seen when
the object was opened (core's `open_ranged`: a header read costs one 64 KiB
request, and the read-ahead grows for sequential streaming).

`AwsCredentials` is prefect-aws's credentials block under the same name and
fields, given to a bucket as `S3Bucket(credentials=...)`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import IO, Any

from stashflow import hookimpl
from stashflow.blocks import Block, SecretStr, one_setting, reveal
from stashflow.exceptions import StorageError, StorageNotFound
from stashflow.keys import validate_storage_key
from stashflow.storage import SPOOL_BYTES, BytesOrFile, Spool, StorageBackend, clean_folder
from stashflow.storage.parts import single_or_parts
from stashflow.storage.ranged import open_ranged

MiB = 1024 * 1024
PART_BYTES = 8 * MiB  # multipart part size (S3's minimum is 5 MiB); grown for huge objects
MAX_PARTS = 10_000  # S3's limit on parts per upload
UPLOAD_THREADS = 4  # parts in flight at once (and in memory) during a multipart upload


# The keys of prefect-aws's AwsClientParameters, as botocore client options.
CLIENT_PARAMETERS = ("endpoint_url", "verify", "verify_cert_path", "use_ssl", "api_version", "config")


def _client_parameters(value: Any, field: str) -> dict[str, Any] | None:
    """`aws_client_parameters` as a plain dict: from a dict, its JSON text, or an object."""
    if value is None:
        return None
    if isinstance(value, str):  # from `stashflow block create --set aws_client_parameters=...`
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"{field} must be a dict, or its JSON text, not {value!r}") from None
    elif not isinstance(value, Mapping):  # an AwsClientParameters-like object
        dump = getattr(value, "model_dump", None)
        value = dump() if callable(dump) else {k: getattr(value, k) for k in CLIENT_PARAMETERS
                                               if hasattr(value, k)}
    if not isinstance(value, Mapping):
        raise ValueError(f"{field} must be a dict, not {type(value).__name__}")
    unknown = sorted(set(value) - set(CLIENT_PARAMETERS))
    if unknown:
        raise ValueError(f"{field} has no parameter {unknown[0]!r}; it takes: "
                         f"{', '.join(CLIENT_PARAMETERS)}")
    if value.get("config") is not None and not isinstance(value["config"], Mapping):
        raise ValueError(f"{field}['config'] must be a dict of botocore Config options")
    out = {k: os.fspath(v) if isinstance(v, os.PathLike) else v
           for k, v in value.items() if v is not None}
    return out or None


class AwsCredentials(Block):
    """AWS credentials, as prefect-aws's block of this name: `S3Bucket(credentials=...)`.

    A block of its own (type `aws-credentials`), saved once and shared by buckets;
    not storage itself. Fields left unset fall back to the AWS default chain.
    `aws_client_parameters` takes `endpoint_url`, `verify`, `verify_cert_path`,
    `use_ssl`, `api_version` and `config` (botocore Config options).
    """

    type_slug = "aws-credentials"

    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    profile_name: str | None = None
    region_name: str | None = None
    aws_client_parameters: dict | None = None

    def __init__(self, **values: Any):
        super().__init__(**values)
        self.aws_client_parameters = _client_parameters(
            self.aws_client_parameters, "AwsCredentials.aws_client_parameters")



class S3Bucket(StorageBackend):
    """Results as objects in an S3 bucket, under `bucket_folder`.

    Unset credentials use the AWS default chain (environment, config files,
    instance metadata). `endpoint_url` points at S3-compatible services
    (MinIO, Ceph, moto, ...). `credentials` takes an `AwsCredentials` block (or
    the slug of a saved one) instead of the flat credential fields; a setting
    given both ways must agree.
    """

    type_slug = "s3-bucket"
    url_schemes = ("s3",)

    bucket_name: str
    bucket_folder: str = ""
    endpoint_url: str | None = None
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    region_name: str | None = None
    credentials: AwsCredentials | None = None
    aws_client_parameters: dict | None = None

    def __init__(self, **values: Any):
        super().__init__(**values)
        if not isinstance(self.bucket_name, str) or not self.bucket_name or "/" in self.bucket_name:
            raise ValueError(f"invalid S3 bucket name {self.bucket_name!r}")
        self.bucket_folder = clean_folder(self.bucket_folder, "bucket_folder")
        self._prefix = f"{self.bucket_folder}/" if self.bucket_folder else ""
        self.aws_client_parameters = _client_parameters(
            self.aws_client_parameters, "S3Bucket.aws_client_parameters")
        self._client_options()  # a conflict between the fields and the credentials fails here

    @classmethod
    def from_url(cls, url: str) -> S3Bucket:
        """`s3://bucket` or `s3://bucket/folder/sub`; credentials from the default chain."""
        scheme, sep, rest = url.partition("://")
        bucket, _, folder = rest.partition("/")
        if not sep or scheme.lower() not in cls.url_schemes or not bucket:
            raise StorageNotFound(f"invalid S3 URL {url!r}: expected s3://bucket[/folder]")
        return cls(bucket_name=bucket, bucket_folder=folder)

    # -- plumbing ---------------------------------------------------------------------

    def connect(self):
        """The s3fs file system for this block (StorageBackend.filesystem() caches it)."""
        import s3fs

        return s3fs.S3FileSystem(**self._client_options())

    def _client_options(self) -> dict[str, Any]:
        """s3fs's options: the bucket's fields, and what its credentials block adds."""
        creds = self.credentials or AwsCredentials()
        own, theirs = self.aws_client_parameters or {}, creds.aws_client_parameters or {}

        def pick(field: str, *more: tuple[str, Any]) -> Any:
            return reveal(one_setting("S3Bucket", (field, getattr(self, field)),
                                      (f"credentials.{field}", getattr(creds, field, None)), *more))

        # Each block keeps its own client: fsspec's instance cache would hand a block
        # built from the environment a client made under another environment.
        options: dict[str, Any] = {"skip_instance_cache": True}
        settings = {
            "key": pick("aws_access_key_id"),
            "secret": pick("aws_secret_access_key"),
            "token": reveal(creds.aws_session_token),
            "profile": creds.profile_name,
            "endpoint_url": pick("endpoint_url", *(
                (f"{where}aws_client_parameters['endpoint_url']", params.get("endpoint_url"))
                for where, params in (("", own), ("credentials.", theirs)))),
        }
        options.update((k, v) for k, v in settings.items() if v)
        client = {"region_name": pick("region_name")}
        for name in CLIENT_PARAMETERS[1:]:
            client[name] = one_setting("S3Bucket", (f"aws_client_parameters[{name!r}]", own.get(name)),
                                       (f"credentials.aws_client_parameters[{name!r}]", theirs.get(name)))
        cert = client.pop("verify_cert_path")
        if cert is not None and client["verify"] is not False:
            client["verify"] = cert  # prefect-aws: a CA bundle, unless verification is off
        config = client.pop("config")
        if config:
            options["config_kwargs"] = dict(config)
        if any(v is not None for v in client.values()):
            options["client_kwargs"] = {k: v for k, v in client.items() if v is not None}
        return options

    def _object_key(self, key: str) -> str:
        return self._prefix + validate_storage_key(key)

    def url_for(self, key: str = "") -> str:
        path = f"{self._prefix}{key}" if key else self.bucket_folder
        return f"s3://{self.bucket_name}/{path}" if path else f"s3://{self.bucket_name}"

    def _error(self, action: str, key: str, exc: BaseException) -> StorageError:
        reason = self.redact(str(exc) or type(exc).__name__)
        return StorageError(f"s3-bucket: could not {action} {self.url_for(key)}: {reason}")

    def _missing(self, key: str) -> FileNotFoundError:
        return FileNotFoundError(2, f"s3-bucket: no object at {self.url_for(key)}")

    def _call(self, action: str, key: str, method: str, **kwargs: Any) -> dict[str, Any]:
        """One S3 API call; a missing key raises FileNotFoundError, any other failure StorageError."""
        fs = self.filesystem()
        try:
            return fs.call_s3(method, Bucket=self.bucket_name, **kwargs)
        except FileNotFoundError as exc:
            if _error_code(exc) == "NoSuchBucket":
                raise self._error(action, key, exc) from exc
            raise self._missing(key) from None
        except FileExistsError:
            raise
        except Exception as exc:
            raise self._error(action, key, exc) from exc

    def _head(self, action: str, key: str) -> dict[str, Any]:
        return self._call(action, key, "head_object", Key=self._object_key(key))

    # -- writing ----------------------------------------------------------------------

    def _part_size(self, data: BytesOrFile) -> int:
        if isinstance(data, (bytes, bytearray, memoryview)):
            size = memoryview(data).nbytes
        else:
            try:
                here = data.tell()
                size = data.seek(0, io.SEEK_END) - here
                data.seek(here)
            except (AttributeError, OSError, ValueError):
                return PART_BYTES
        return max(PART_BYTES, -(-size // MAX_PARTS))

    def _put(self, action: str, key: str, data: BytesOrFile, conditions: dict[str, str]) -> None:
        """Upload `data` atomically: one PUT if it fits in a part, else a multipart upload.

        A multipart upload is visible only once completed; on any failure it is aborted.
        """
        object_key = self._object_key(key)
        single, parts = single_or_parts(data, self._part_size(data))
        if parts is None:
            self._call(action, key, "put_object", Key=object_key, Body=bytes(single), **conditions)
            return
        upload = self._call(action, key, "create_multipart_upload", Key=object_key)["UploadId"]

        def send(number: int, chunk: bytes) -> dict[str, Any]:
            out = self._call(action, key, "upload_part", Key=object_key, UploadId=upload,
                             PartNumber=number, Body=chunk)
            return {"PartNumber": number, "ETag": out["ETag"]}

        try:
            sent: list[Future] = []
            pending: set[Future] = set()
            with ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="stashflow-s3") as pool:
                for number, chunk in enumerate(parts, start=1):
                    # At most UPLOAD_THREADS parts in memory; the first failure stops reading.
                    # (Wait on the pending parts only: waiting on all returns at once as
                    # soon as any part has finished, and the loop would spin.)
                    while len(pending) >= UPLOAD_THREADS:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in finished:
                            if f.exception() is not None:
                                raise f.exception()
                    future = pool.submit(send, number, bytes(chunk))
                    sent.append(future)
                    pending.add(future)
            done = [f.result() for f in sent]
            self._call(action, key, "complete_multipart_upload", Key=object_key,
                       UploadId=upload, MultipartUpload={"Parts": done}, **conditions)
        except BaseException:
            self._abort(object_key, upload)
            raise

    def _abort(self, object_key: str, upload: str) -> None:
        """Best effort: if the service is unreachable the parts are left to its lifecycle rules."""
        with contextlib.suppress(Exception):
            self.filesystem().call_s3("abort_multipart_upload", Bucket=self.bucket_name,
                                      Key=object_key, UploadId=upload)

    def write(self, key: str, data: BytesOrFile) -> None:
        """Store `data` at `key`, replacing any object there; atomic on the server."""
        self._put("write", key, data, {})

    def create(self, key: str, data: BytesOrFile) -> bool:
        """Store `data` only if `key` is absent: a conditional PUT (`If-None-Match: *`)."""
        try:
            self._put("create", key, data, {"IfNoneMatch": "*"})
        except FileExistsError:
            return False
        except StorageError as exc:
            code = _error_code(exc.__cause__)
            if code == "ConditionalRequestConflict":
                return False  # another create of this key is in flight: it wins or fails
            if code in ("NotImplemented", "501"):
                raise StorageError(
                    f"{exc}. This S3 service does not support conditional writes "
                    "(If-None-Match); stashflow will not fall back to a racy check-then-write"
                ) from exc.__cause__
            raise
        return True

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        """A seekable spool (memory up to SPOOL_BYTES, then a temp file), uploaded on success."""
        with Spool(max_size=SPOOL_BYTES) as spool:
            yield spool
            spool.seek(0)
            self.write(key, spool)

    # -- reading ----------------------------------------------------------------------

    def read(self, key: str) -> bytes:
        """The whole object, in one GET."""
        fs = self.filesystem()

        async def fetch() -> bytes:
            resp = await fs._call_s3("get_object", Bucket=self.bucket_name,
                                     Key=self._object_key(key))
            body = resp["Body"]
            try:
                return await body.read()
            finally:
                body.close()

        return self._get(key, fetch)

    def open_read(self, key: str) -> IO[bytes]:
        """A seekable reader; only the ranges read are downloaded, all of the version opened."""
        head = self._head("read", key)
        conditions = {"IfMatch": head["ETag"]} if head.get("ETag") else {}
        fs = self.filesystem()

        def fetch(start: int, end: int) -> memoryview:
            async def get() -> memoryview:
                resp = await fs._call_s3("get_object", Bucket=self.bucket_name,
                                         Key=self._object_key(key),
                                         Range=f"bytes={start}-{end - 1}", **conditions)
                body, out, got = resp["Body"], bytearray(end - start), 0
                try:  # in pieces: the whole body at once would be held twice
                    while got < len(out) and (chunk := await body.read(min(MiB, len(out) - got))):
                        out[got:got + len(chunk)] = chunk
                        got += len(chunk)
                finally:
                    body.close()
                return memoryview(out)[:got]

            return self._get(key, get)

        return open_ranged(fetch, head["ContentLength"], self.url_for(key))

    def exists(self, key: str) -> bool:
        try:
            self._head("check", key)
        except FileNotFoundError:
            return False
        return True

    def stat(self, key: str) -> dict[str, Any]:
        head = self._head("stat", key)
        out: dict[str, Any] = {"size": head["ContentLength"], "etag": head.get("ETag")}
        if head.get("LastModified") is not None:
            out["mtime"] = head["LastModified"].timestamp()
        return out

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._call("delete", key, "delete_object", Key=self._object_key(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key under `bucket_folder` starting with `prefix`."""
        cut = len(self._prefix)
        token: dict[str, str] = {}
        while True:
            page = self._call("list", prefix, "list_objects_v2",
                              Prefix=self._prefix + prefix, **token)
            for item in page.get("Contents", ()):
                key = item["Key"][cut:]
                if key and not key.endswith("/"):
                    yield key
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def _get(self, key: str, fetch):
        """Run the coroutine function `fetch` (GETs of `key`) on s3fs's loop, mapping errors."""
        from fsspec.asyn import sync

        try:
            return sync(self.filesystem().loop, fetch)
        except FileNotFoundError as exc:
            if _error_code(exc) == "NoSuchBucket":
                raise self._error("read", key, exc) from exc
            raise self._missing(key) from None
        except Exception as exc:
            if _error_code(exc) == "PreconditionFailed":
                raise StorageError(
                    f"s3-bucket: {self.url_for(key)} was replaced while being read; read it again"
                ) from exc
            raise self._error("read", key, exc) from exc


def _error_code(exc: BaseException | None) -> str | None:
    """The S3 error code behind an s3fs/botocore exception, if any."""
    while exc is not None:
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            return response.get("Error", {}).get("Code")
        exc = exc.__cause__
    return None


@hookimpl
def register_storage_types(register):
    register(S3Bucket)


@hookimpl
def register_block_types(register):
    register(AwsCredentials)  # a block of its own, not storage: buckets hold it


__all__ = ["AwsCredentials", "S3Bucket"]
