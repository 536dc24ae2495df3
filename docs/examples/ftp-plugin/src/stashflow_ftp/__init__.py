"""An example stashflow plugin: result storage on an FTP server.

All of the storage logic is `FsspecStorageBackend`'s; this module only says how
to connect, where keys live, and what FTP can do:

- a rename (RNFR/RNTO) replaces its target in one step on the server, so a
  write is a temp file beside the target renamed over it (`atomic_rename`);
- FTP has no exclusive create and no hard links, but renaming a folder onto a
  name fails while a folder with something in it is there: `create` holds a
  marker folder taken that way (`create_by = "marker"`);
- an ftplib connection serves one command at a time: each thread connects its
  own (`thread_safe_client = False`), and connects again after a minute unused,
  before the server drops it for idling (`client_idle`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from stashflow import hookimpl
from stashflow.blocks import SecretStr, reveal
from stashflow.exceptions import StorageNotFound
from stashflow.storage import FsspecStorageBackend, clean_folder


class FtpStorage(FsspecStorageBackend):
    """Results as files under `folder` on the FTP server at `host`:`port`."""

    type_slug = "ftp"
    url_schemes = ("ftp",)
    atomic_rename = True
    create_by = "marker"
    thread_safe_client = False
    client_idle = 60.0

    host: str
    port: int = 21
    username: str | None = None  # None: anonymous
    password: SecretStr | None = None
    folder: str = ""  # from the server's root; "" is the root itself

    def __init__(self, **values: Any):
        super().__init__(**values)
        self.folder = clean_folder(self.folder)

    @classmethod
    def from_url(cls, url: str) -> FtpStorage:
        """`ftp://[user[:password]@]host[:port][/folder]`."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in cls.url_schemes or not parts.hostname:
            raise StorageNotFound(f"invalid FTP URL {url!r}: expected ftp://[user@]host[:port][/folder]")
        return cls(host=parts.hostname, port=parts.port or 21,
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None,
                   folder=unquote(parts.path))

    def connect(self) -> Any:
        from fsspec.implementations.ftp import FTPFileSystem

        # No listings cache: other clients write to the same folders.
        return FTPFileSystem(self.host, port=self.port, username=self.username,
                             password=reveal(self.password), use_listings_cache=False)

    def root(self) -> str:
        return f"/{self.folder}"

    def url_for(self, key: str = "") -> str:
        path = "/".join(part for part in (self.folder, key) if part)
        return f"ftp://{self.host}:{self.port}/{path}"


@hookimpl
def register_storage_types(register):
    register(FtpStorage)
