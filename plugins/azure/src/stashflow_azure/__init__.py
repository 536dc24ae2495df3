"""Azure Blob Storage result storage, on adlfs and azure-storage-blob.

adlfs builds the client (credentials, the default chain, environment
variables) and the event loop; every operation is one call of
azure-storage-blob's client, so nothing depends on adlfs's listing cache or
directory emulation. A value up to 8 MiB is one Put Blob; a bigger one is
staged in 8 MiB blocks and published by one Put Block List, so a reader sees
the old blob, the whole new one, or nothing. `create` sends `If-None-Match: *`.
Reads are ranged GETs pinned to the ETag seen when the blob was opened.
adlfs is imported on first use, not with stashflow.

`AzureBlobStorageCredentials` is prefect-azure's credentials block under the
same name and fields, given as `AzureBlobStorageContainer(credentials=...)`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import uuid
from collections.abc import Callable, Iterator
from typing import IO, Any
from urllib.parse import urlsplit

from stashflow import hookimpl
from stashflow.blocks import Block, SecretStr, one_setting, reveal
from stashflow.exceptions import StorageError
from stashflow.keys import validate_storage_key
from stashflow.storage import BytesOrFile, StorageBackend, clean_folder
from stashflow.storage.parts import single_or_parts
from stashflow.storage.ranged import open_ranged

PART_BYTES = 8 * 1024 * 1024  # one Put Blob up to this; staged blocks of this size beyond
COMMIT_ATTEMPTS = 3  # a concurrent commit of the same blob discards our staged blocks: redo
_EXISTS = ("BlobAlreadyExists", "ConditionNotMet")
_FOLDER_FLAGS = ("hdi_isfolder", "is_directory")  # directory entries (ADLS Gen2, adlfs)


def _code(exc: BaseException) -> str | None:
    code = getattr(exc, "error_code", None)
    if code is None and getattr(exc, "status_code", None) == 412:
        return "ConditionNotMet"
    return getattr(code, "value", code)


def _account_of(url: str) -> str:
    """The account of a blob endpoint: https://ACCOUNT.blob.core.windows.net, or
    path-style (emulators, custom domains) http://127.0.0.1:10000/ACCOUNT."""
    parts = urlsplit(url)
    first = parts.path.strip("/").split("/", 1)[0]
    return first or parts.hostname.split(".", 1)[0]


class AzureBlobStorageCredentials(Block):
    """Azure Blob Storage credentials, as prefect-azure's block of this name:
    `AzureBlobStorageContainer(credentials=...)`.

    A block of its own (type `azure-blob-storage-credentials`), saved once and
    shared; not storage itself. `connection_string` (a secret), or `account_url`
    (the account's blob endpoint) for Azure's default credential chain, not both;
    neither: adlfs's AZURE_STORAGE_* environment variables.
    """

    type_slug = "azure-blob-storage-credentials"

    connection_string: SecretStr | None = None
    account_url: str | None = None

    def __init__(self, **values: Any):
        super().__init__(**values)
        if self.connection_string is not None and self.account_url is not None:
            raise ValueError("AzureBlobStorageCredentials takes connection_string or account_url, "
                             "not both: the connection string already names the account")
        url = self.account_url
        if url is not None and (not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https")
                                or not urlsplit(url).hostname):
            raise ValueError(f"AzureBlobStorageCredentials.account_url must be the account's blob "
                             f"endpoint, https://ACCOUNT.blob.core.windows.net, not {url!r}")



class AzureBlobStorageContainer(StorageBackend):
    """Results as block blobs in an Azure Blob Storage container, under `blob_folder`.

    Give `connection_string`, or `account_name` with `account_key`, or only
    `account_name` for Azure's default credential chain (DefaultAzureCredential);
    unset fields are taken from adlfs's AZURE_STORAGE_* environment variables.
    `credentials` takes an `AzureBlobStorageCredentials` block (or the slug of a
    saved one) instead of `connection_string` and `account_name`; a setting given
    both ways must agree. With `credentials.account_url`, `account_key` (if set)
    is that account's key.
    """

    type_slug = "azure-blob-storage"
    url_schemes = ("az", "abfs")

    container_name: str
    blob_folder: str = ""
    connection_string: SecretStr | None = None
    account_name: str | None = None
    account_key: SecretStr | None = None
    credentials: AzureBlobStorageCredentials | None = None

    def __init__(self, **values: Any):
        super().__init__(**values)
        name = self.container_name
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"container_name must be a container's name, not {name!r}")
        self.blob_folder = clean_folder(self.blob_folder, "blob_folder")
        self._prefix = f"{self.blob_folder}/" if self.blob_folder else ""
        self._client_options()  # a conflict between the fields and the credentials fails here

    def _client_options(self) -> dict[str, Any]:
        """adlfs's options: the container's fields, and what its credentials block adds."""
        creds = self.credentials or AzureBlobStorageCredentials()
        where, url = "AzureBlobStorageContainer", creds.account_url
        connection_string = reveal(one_setting(
            where, ("connection_string", self.connection_string),
            ("credentials.connection_string", creds.connection_string)))
        for field in ("account_name", "account_key") if creds.connection_string is not None else ():
            if getattr(self, field) is not None:
                raise ValueError(f"{where}: {field} and credentials.connection_string both say how "
                                 "to connect; give the connection string alone")
        if url is not None and self.connection_string is not None:
            raise ValueError(f"{where}: connection_string and credentials.account_url both say "
                             "where to connect; give one of them")
        account = one_setting(where, ("account_name", self.account_name),
                              ("credentials.account_url", url and _account_of(url)))
        key = reveal(self.account_key)
        options: dict[str, Any] = {"skip_instance_cache": True}  # a client per block
        if url and key:  # shared key, on any endpoint (Azurite's is path-style, over http)
            connection_string = (f"DefaultEndpointsProtocol={urlsplit(url).scheme};AccountName="
                                 f"{account};AccountKey={key};BlobEndpoint={url.rstrip('/')};")
        elif url:  # the default credential chain, over https as Azure AD requires
            if urlsplit(url).scheme != "https":
                raise ValueError(f"{where}: credentials.account_url is not https, which Azure's "
                                 "credential chain needs; give account_key too, or a connection string")
            options["account_host"] = url.split("://", 1)[1].rstrip("/")
        if connection_string is not None:
            options["connection_string"] = connection_string
        options.update((k, v) for k, v in (("account_name", account), ("account_key", key)) if v)
        return options

    @classmethod
    def from_url(cls, url: str) -> AzureBlobStorageContainer:
        """`az://container/folder`, or `abfs://container@account.dfs.core.windows.net/folder`.

        Credentials come from the environment (AZURE_STORAGE_CONNECTION_STRING, ...)
        or the default chain.
        """
        rest = url.split("://", 1)[1].split("?", 1)[0]
        where, _, folder = rest.partition("/")
        container, _, host = where.partition("@")
        values: dict[str, Any] = {"container_name": container, "blob_folder": folder}
        if host:
            values["account_name"] = host.split(".", 1)[0]
        return cls(**values)

    # -- the client ---------------------------------------------------------------------

    def connect(self):
        """The adlfs file system (StorageBackend.filesystem() caches it)."""
        from adlfs import AzureBlobFileSystem

        options = self._client_options()
        try:
            fs = AzureBlobFileSystem(**options)
        except ValueError as exc:
            raise StorageError(
                f"azure-blob-storage: cannot connect to container {self.container_name!r}: "
                f"{exc}. Set connection_string, or account_name (with account_key, or "
                "nothing for the default credential chain), or AZURE_STORAGE_CONNECTION_STRING"
            ) from None
        return fs


    def _blob_name(self, key: str) -> str:
        return self._prefix + validate_storage_key(key)

    def url_for(self, key: str = "") -> str:
        path = f"{self._prefix}{key}" if key else self.blob_folder
        return f"az://{self.container_name}/{path}" if path else f"az://{self.container_name}"

    def _error(self, action: str, key: str, exc: BaseException) -> StorageError:
        code = _code(exc)
        if code == "ContainerNotFound":
            reason = f"container {self.container_name!r} does not exist"
        elif code == "InvalidBlockList":
            reason = ("its staged blocks are gone (another writer committed this blob, or the "
                      "server lost them); nothing was published")
        else:
            first = (str(exc).strip().splitlines() or [""])[0]
            reason = f"{type(exc).__name__}: {first}" + (f" ({code})" if code else "")
        err = StorageError(f"azure-blob-storage: could not {action} "
                           f"{self.url_for(key)}: {self.redact(reason)}")
        err.key = key
        return err

    def _call(self, action: str, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any):
        """Run the client call `fn` on adlfs's loop.

        A missing blob raises FileNotFoundError, a failed precondition (the blob
        exists, or changed) FileExistsError, anything else StorageError.
        """
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
        from fsspec.asyn import sync

        fs = self.filesystem()
        try:
            return sync(fs.loop, fn, *args, **kwargs)
        except ResourceNotFoundError as exc:
            if _code(exc) == "ContainerNotFound":
                raise self._error(action, key, exc) from exc
            raise FileNotFoundError(
                errno.ENOENT, f"azure-blob-storage: no blob at {self.url_for(key)}") from None
        except Exception as exc:
            if isinstance(exc, ResourceExistsError) or _code(exc) in _EXISTS:
                raise FileExistsError(
                    errno.EEXIST, f"azure-blob-storage: {self.url_for(key)} exists") from exc
            raise self._error(action, key, exc) from exc

    def _blob(self, key: str):
        return self.filesystem().service_client.get_blob_client(
            self.container_name, self._blob_name(key))

    # -- writing ------------------------------------------------------------------------

    def _upload(self, action: str, key: str, data: BytesOrFile, create: bool) -> None:
        """One Put Blob, or staged blocks and one Put Block List; the caller's errors pass."""
        from azure.core import MatchConditions
        from azure.storage.blob import BlobBlock

        blob = self._blob(key)
        condition = {"match_condition": MatchConditions.IfMissing} if create else {}
        start = _position(data)
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            single, parts = single_or_parts(data, PART_BYTES)
            if parts is None:
                self._call(action, key, blob.upload_blob, bytes(single), overwrite=not create)
                return
            blocks = []
            for chunk in parts:
                block = BlobBlock(uuid.uuid4().hex)
                self._call(action, key, blob.stage_block, block.id, chunk, length=len(chunk))
                blocks.append(block)
            try:
                self._call(action, key, blob.commit_block_list, blocks, **condition)
                return
            except StorageError as exc:
                # Another writer's commit of this blob dropped our uncommitted blocks.
                if _code(exc.__cause__) != "InvalidBlockList" or attempt == COMMIT_ATTEMPTS:
                    raise
                if create and self.exists(key):
                    raise FileExistsError(errno.EEXIST, self.url_for(key)) from None
                if start is None:
                    raise
                if not isinstance(data, (bytes, bytearray, memoryview)):
                    data.seek(start)  # a seekable source (open_write's spool): send it again

    def write(self, key: str, data: BytesOrFile) -> None:
        self._upload("write", key, data, create=False)

    def create(self, key: str, data: BytesOrFile) -> bool:
        small = isinstance(data, (bytes, bytearray, memoryview)) and (
            memoryview(data).nbytes <= PART_BYTES)
        if not small and self.exists(key):
            return False  # already there: skip staging a big value for nothing
        try:
            self._upload("create", key, data, create=True)
        except FileExistsError:
            return False
        return True

    # -- reading ------------------------------------------------------------------------

    def read(self, key: str) -> bytes:
        async def download() -> bytes:
            stream = await self._blob(key).download_blob()
            return await stream.readall()

        return self._call("read", key, download)

    def _properties(self, action: str, key: str):
        props = self._call(action, key, self._blob(key).get_blob_properties)
        if any((props.metadata or {}).get(flag) == "true" for flag in _FOLDER_FLAGS):
            raise FileNotFoundError(  # a directory entry (ADLS Gen2), not a stored value
                errno.ENOENT, f"azure-blob-storage: no blob at {self.url_for(key)}")
        return props

    def open_read(self, key: str) -> IO[bytes]:
        from azure.core import MatchConditions

        props = self._properties("read", key)
        blob, etag = self._blob(key), props.etag

        async def download(start: int, end: int) -> bytes:
            stream = await blob.download_blob(offset=start, length=end - start, etag=etag,
                                              match_condition=MatchConditions.IfNotModified)
            return await stream.readall()

        def fetch(start: int, end: int) -> bytes:
            try:
                return self._call("read", key, download, start, end)
            except (FileNotFoundError, FileExistsError):
                raise StorageError(
                    f"azure-blob-storage: {self.url_for(key)} was replaced or deleted while "
                    "being read; read it again"
                ) from None

        return open_ranged(fetch, props.size, self.url_for(key))

    def exists(self, key: str) -> bool:
        try:
            self._properties("check", key)
        except FileNotFoundError:
            return False
        return True

    def stat(self, key: str) -> dict[str, Any]:
        props = self._properties("stat", key)
        return {"size": props.size, "mtime": props.last_modified.timestamp(), "etag": props.etag}

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._call("delete", key, self._blob(key).delete_blob, delete_snapshots="include")

    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key under `blob_folder` starting with `prefix`."""
        container = self.filesystem().service_client.get_container_client(self.container_name)

        async def names() -> list[str]:
            found = []
            async for item in container.list_blobs(name_starts_with=self._prefix + prefix,
                                                   include=["metadata"]):
                meta = item.metadata or {}
                if not any(meta.get(flag) == "true" for flag in _FOLDER_FLAGS):
                    found.append(item.name)
            return found

        cut = len(self._prefix)
        for name in self._call("list", prefix, names):
            key = name[cut:]
            if key and not key.endswith("/"):
                yield key


def _position(data: BytesOrFile) -> int | None:
    """Where a seekable file stands (to send it again), else None."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return 0
    try:
        return data.tell() if data.seekable() else None
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


@hookimpl
def register_storage_types(register):
    register(AzureBlobStorageContainer)


@hookimpl
def register_block_types(register):
    register(AzureBlobStorageCredentials)  # a block of its own, not storage: buckets hold it


__all__ = ["AzureBlobStorageContainer", "AzureBlobStorageCredentials"]
