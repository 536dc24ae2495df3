"""Google Cloud Storage result storage, on gcsfs.

Every write is one upload - a single request for bytes under 50 MiB (or a
file of up to 8 MiB), else a resumable upload in 8 MiB parts that publishes the
object only when the last part lands - so a reader sees the old object, the
whole new one, or nothing.
`create` sends `ifGenerationMatch=0`, which the service checks atomically.
Reads are ranged GETs pinned to the generation seen when the object was opened.
gcsfs is imported on first use, not with stashflow.

`GcpCredentials` is prefect-gcp's credentials block under the same name and
fields, given to a bucket as `GcsBucket(gcp_credentials=...)`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
import warnings
from collections.abc import Iterator, Mapping
from typing import IO, Any

from stashflow import hookimpl
from stashflow.blocks import Block, SecretStr, one_setting, reveal
from stashflow.exceptions import StorageError
from stashflow.keys import RESERVED_PREFIX, validate_storage_key
from stashflow.storage import BytesOrFile, StorageBackend, clean_folder
from stashflow.storage.parts import single_or_parts
from stashflow.storage.ranged import open_ranged

PART_BYTES = 8 * 1024 * 1024  # resumable upload part; a multiple of GCS's 256 KiB unit
SIMPLE_UPLOAD_BYTES = 50 * 1024 * 1024  # gcsfs sends bytes up to this in one request
_PROBE_PREFIX = f"{RESERVED_PREFIX}-probe/"
_honours_preconditions: dict[str, bool] = {}  # endpoint -> does it check ifGenerationMatch


def _emulator_host() -> str | None:
    host = os.environ.get("STORAGE_EMULATOR_HOST", "")
    return host if host not in ("", "default") else None


class GcpCredentials(Block):
    """Google Cloud credentials, as prefect-gcp's block of this name: `GcsBucket(gcp_credentials=...)`.

    A block of its own (type `gcp-credentials`), saved once and shared by buckets;
    not storage itself. A service account key as `service_account_file` (its path)
    or `service_account_info` (its contents: a dict or the JSON text; a secret), or
    neither for Google's default credential chain; `project`, the Google Cloud project.
    """

    type_slug = "gcp-credentials"

    service_account_file: str | None = None
    service_account_info: SecretStr | None = None
    project: str | None = None

    def __init__(self, **values: Any):
        if isinstance(values.get("service_account_info"), Mapping):
            values["service_account_info"] = json.dumps(dict(values["service_account_info"]))
        if isinstance(values.get("service_account_file"), os.PathLike):
            values["service_account_file"] = os.fspath(values["service_account_file"])
        super().__init__(**values)
        if self.service_account_file is not None and self.service_account_info is not None:
            raise ValueError("GcpCredentials takes service_account_file or service_account_info, "
                             "not both: give the key once")



class GcsBucket(StorageBackend):
    """Results as objects in a GCS bucket, under `bucket_folder`.

    `token`: unset for Google's default credential chain (anonymous when
    STORAGE_EMULATOR_HOST is set); else "anon", "google_default", "cache",
    "cloud", a service-account key file path, the key file's JSON text, or an
    OAuth access token. `endpoint_url`: an emulator or a private endpoint.
    `gcp_credentials` takes a `GcpCredentials` block (or the slug of a saved one)
    instead of `token` and `project`; a setting given both ways must agree.
    """

    type_slug = "gcs-bucket"
    url_schemes = ("gs", "gcs")

    bucket: str
    bucket_folder: str = ""
    project: str | None = None
    endpoint_url: str | None = None
    token: SecretStr | None = None
    gcp_credentials: GcpCredentials | None = None

    def __init__(self, **values: Any):
        super().__init__(**values)
        if not isinstance(self.bucket, str) or not self.bucket or "/" in self.bucket:
            raise ValueError(f"bucket must be a bucket name, not {self.bucket!r}")
        self.bucket_folder = clean_folder(self.bucket_folder, "bucket_folder")
        self._root = f"{self.bucket}/{self.bucket_folder}/" if self.bucket_folder else f"{self.bucket}/"
        self._credential()  # a conflict between the fields and gcp_credentials fails here

    def _credential(self) -> tuple[Any, str | None]:
        """(token, project): the bucket's fields, and what its gcp_credentials block adds."""
        creds = self.gcp_credentials or GcpCredentials()
        key_file = creds.service_account_file and os.path.expanduser(creds.service_account_file)
        token = one_setting("GcsBucket", ("token", self.token),
                            ("gcp_credentials.service_account_info", creds.service_account_info),
                            ("gcp_credentials.service_account_file", key_file))
        project = one_setting("GcsBucket", ("project", self.project),
                              ("gcp_credentials.project", creds.project))
        return reveal(token), project

    @classmethod
    def from_url(cls, url: str) -> GcsBucket:
        """`gs://bucket/folder` (or `gcs://`); credentials from the default chain."""
        rest = url.split("://", 1)[1].split("?", 1)[0].split("#", 1)[0]
        bucket, _, folder = rest.partition("/")
        return cls(bucket=bucket, bucket_folder=folder)

    # -- the client ---------------------------------------------------------------------

    def connect(self):
        emulator = _emulator_host()
        if self.endpoint_url or emulator:
            # The plain JSON-API client: gcsfs's default class first asks a gRPC
            # API whether a bucket is zonal, which no emulator answers.
            from gcsfs.core import GCSFileSystem
        else:
            from gcsfs import GCSFileSystem
        endpoint = self.endpoint_url or emulator
        kwargs: dict[str, Any] = {"token": self._token(anonymous=bool(emulator)),
                                  "use_listings_cache": False, "skip_instance_cache": True}
        if endpoint:
            kwargs["endpoint_url"] = (endpoint if "://" in endpoint else f"http://{endpoint}").rstrip("/")
        project = self._credential()[1]
        if project:
            kwargs["project"] = project
        return GCSFileSystem(**kwargs)

    def _token(self, anonymous: bool) -> Any:
        token = self._credential()[0]
        creds = self.gcp_credentials or GcpCredentials()
        if creds.service_account_file and not os.path.isfile(token):  # gcsfs: a path, or a token
            raise StorageError(f"gcs-bucket: gcp_credentials.service_account_file {token!r} is not "
                               "a file; give the path of a service account key file (JSON)")
        if creds.service_account_info and not token.strip().startswith("{"):  # never quote it
            raise StorageError("gcs-bucket: gcp_credentials.service_account_info is not a service "
                               "account key: give the key file's contents, as a dict or its JSON text")
        if token is None:
            # Like google-cloud-storage: an emulator from the environment means anonymous.
            return "anon" if anonymous and not self.endpoint_url else None
        token = token.strip()
        if token.startswith("{"):
            try:
                return json.loads(token)
            except ValueError:
                raise StorageError(
                    "gcs-bucket: the token looks like a JSON key but does not parse"
                ) from None
        return token

    def _call(self, method, *args, **kwargs):
        from fsspec.asyn import sync

        fs = self.filesystem()
        return sync(fs.loop, getattr(fs, method), *args, **kwargs)

    # -- helpers ------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        return self._root + validate_storage_key(key)

    def url_for(self, key: str = "") -> str:
        return f"gs://{self._root}{key}" if key else f"gs://{self._root.rstrip('/')}"

    def _error(self, action: str, key: str, exc: BaseException,
               missing: str | None = None) -> StorageError:
        if isinstance(exc, FileNotFoundError):
            reason = missing or f"bucket {self.bucket!r} does not exist"
        else:
            reason = self.redact(f"{type(exc).__name__}: {exc}".rstrip(": "))
        err = StorageError(f"gcs-bucket: could not {action} {self.url_for(key)}: {reason}")
        err.key = key
        return err

    @contextlib.contextmanager
    def _reading(self, action: str, key: str) -> Iterator[None]:
        """Errors become StorageError naming the key; a missing object FileNotFoundError."""
        try:
            yield
        except FileNotFoundError:
            raise FileNotFoundError(
                errno.ENOENT, f"gcs-bucket: no object at {self.url_for(key)}") from None
        except StorageError:
            raise
        except Exception as exc:
            raise self._error(action, key, exc) from self.safe_cause(exc)

    @contextlib.contextmanager
    def _writing(self, action: str, key: str, missing: str | None = None) -> Iterator[None]:
        """Errors become StorageError; a 404 means `missing` (default: no such bucket)."""
        try:
            yield
        except (FileExistsError, StorageError):
            raise
        except Exception as exc:
            raise self._error(action, key, exc, missing) from self.safe_cause(exc)

    def _object(self, key: str, action: str = "stat") -> dict[str, Any]:
        """The object's metadata (one GET, no listing); FileNotFoundError if absent."""
        with self._reading(action, key):
            return self._call("_get_object", self._path(key))

    def _upload(self, action: str, key: str, data: BytesOrFile, create: bool) -> None:
        """One upload; errors of the service become StorageError, the caller's own pass."""
        path = self._path(key)
        parts = None
        if not isinstance(data, (bytes, bytearray, memoryview)):
            data, parts = single_or_parts(data, PART_BYTES)  # a small file: one request, like bytes
        with self._writing(action, key):
            fs = self.filesystem()
            if parts is None:
                fs.pipe_file(path, memoryview(data).cast("B"),
                             mode="create" if create else "overwrite")
                return
            f = fs.open(path, "xb" if create else "wb", block_size=PART_BYTES)
        lost = "the server no longer knows the upload (did it restart?); nothing was published"
        try:
            for part in parts:
                with self._writing(action, key, lost):
                    f.write(part)
            with self._writing(action, key, lost):
                f.close()
        except BaseException:
            # Abandon the resumable upload: GCS publishes an object only when its last
            # part is sent, and drops unfinished sessions after a week. (Closing the
            # file, or leaving it to the garbage collector, would publish the parts.)
            # No cancel request: gcsfs would retry it for half a minute on a dead server.
            f.closed = True
            raise

    # -- the primitives -----------------------------------------------------------------

    def write(self, key: str, data: BytesOrFile) -> None:
        self._upload("write", key, data, create=False)

    def create(self, key: str, data: BytesOrFile) -> bool:
        streamed = not isinstance(data, (bytes, bytearray, memoryview)) or (
            len(memoryview(data).cast("B")) >= SIMPLE_UPLOAD_BYTES
        )
        if (streamed or not self._preconditions_honoured()) and self.exists(key):
            return False  # already there: skip the upload
        try:
            self._upload("create", key, data, create=True)
        except FileExistsError:
            return False
        return True

    def _preconditions_honoured(self) -> bool:
        """Google's service checks ifGenerationMatch; an emulator is probed once per process."""
        endpoint = self.endpoint_url or _emulator_host()
        if endpoint is None:
            return True
        known = _honours_preconditions.get(endpoint)
        if known is None:
            probe = f"{self._root}{_PROBE_PREFIX}{uuid.uuid4().hex}"
            with self._writing("create", _PROBE_PREFIX):
                fs = self.filesystem()
                fs.pipe_file(probe, b"1", mode="create")
                try:
                    fs.pipe_file(probe, b"2", mode="create")
                    known = False
                except FileExistsError:
                    known = True
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        fs.rm_file(probe)
            _honours_preconditions[endpoint] = known
            if not known:
                warnings.warn(
                    f"gcs-bucket: the server at {endpoint} ignores ifGenerationMatch=0, so "
                    "create() there checks then writes and two racing writers can both win",
                    RuntimeWarning, stacklevel=3,
                )
        return known

    def read(self, key: str) -> bytes:
        path = self._path(key)
        with self._reading("read", key):
            return self.filesystem().cat_file(path)

    def open_read(self, key: str) -> IO[bytes]:
        path = self._path(key)
        info = self._object(key, "read")
        generation = info.get("generation")
        fs = self.filesystem()

        def fetch(start: int, end: int) -> bytes:
            try:
                with self._reading("read", key):
                    return fs.cat_file(path, start=start, end=end, generation=generation)
            except FileNotFoundError:
                raise StorageError(
                    f"gcs-bucket: {self.url_for(key)} was replaced or deleted while being read; "
                    "read it again"
                ) from None

        return open_ranged(fetch, int(info["size"]), self.url_for(key))

    def exists(self, key: str) -> bool:
        try:
            self._object(key, "check")
        except FileNotFoundError:
            return False
        return True

    def stat(self, key: str) -> dict[str, Any]:
        info = self._object(key)
        out: dict[str, Any] = {"size": int(info["size"]), "generation": info.get("generation")}
        if info.get("mtime") is not None:
            out["mtime"] = info["mtime"].timestamp()
        return out

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._writing("delete", key), contextlib.suppress(FileNotFoundError):
            self.filesystem().rm_file(path)

    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key under `bucket_folder` starting with `prefix`."""
        root = self._root
        with self._reading("list", prefix):
            try:
                names = self.filesystem().find(root.rstrip("/"), prefix=prefix)
            except FileNotFoundError:
                return
        for name in names:
            key = name[len(root):]
            if name.startswith(root) and key.startswith(prefix) and key and not key.endswith("/"):
                yield key


@hookimpl
def register_storage_types(register):
    register(GcsBucket)


@hookimpl
def register_block_types(register):
    register(GcpCredentials)  # a block of its own, not storage: buckets hold it


__all__ = ["GcpCredentials", "GcsBucket"]
