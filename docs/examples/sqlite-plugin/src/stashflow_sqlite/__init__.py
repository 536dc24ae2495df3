"""An example stashflow plugin: SQLite result storage and a JSON Lines serializer.

`SQLiteStorage` keeps each record as one row of one database file; a write is
one SQL statement, so readers see the old row or the new one, never half of
one. `JSONLinesSerializer` writes a list of JSON values one per line and can
stream both ways.
"""

from __future__ import annotations

import io
import json
import sqlite3
import threading
from collections.abc import Iterator
from typing import IO, Any

from stashflow import hookimpl
from stashflow.exceptions import SerializationError
from stashflow.serializers import Serializer
from stashflow.storage import BytesOrFile, StorageBackend

_SCHEMA = "CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, data BLOB NOT NULL)"


def _as_bytes(data: BytesOrFile) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    return data.read()  # a large record arrives as a file; SQLite wants it whole


class SQLiteStorage(StorageBackend):
    """Records as rows of the SQLite database at `path`."""

    type_slug = "sqlite-file"
    url_schemes = ("sqlite",)

    path: str  # a required field: the database file

    def __init__(self, **values: Any):
        super().__init__(**values)
        self._local = threading.local()  # one connection per thread

    def __getstate__(self) -> dict[str, Any]:  # connections do not pickle; reopen on the other side
        return {k: v for k, v in vars(self).items() if k != "_local"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self._local = threading.local()

    @classmethod
    def from_url(cls, url: str) -> SQLiteStorage:
        """`sqlite:///absolute/path/results.db`."""
        return cls(path=url.split("://", 1)[1])

    def url_for(self, key: str = "") -> str:
        return f"sqlite://{self.path}#{key}" if key else f"sqlite://{self.path}"

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            # Autocommit: each statement is its own transaction. WAL lets readers run
            # while a writer writes; `timeout` makes writers wait for each other.
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            self._local.db = db
        return db

    def write(self, key: str, data: BytesOrFile) -> None:
        self._db().execute("INSERT OR REPLACE INTO objects (key, data) VALUES (?, ?)",
                           (key, _as_bytes(data)))

    def create(self, key: str, data: BytesOrFile) -> bool:
        cursor = self._db().execute("INSERT OR IGNORE INTO objects (key, data) VALUES (?, ?)",
                                    (key, _as_bytes(data)))
        return cursor.rowcount == 1

    def read(self, key: str) -> bytes:
        row = self._db().execute("SELECT data FROM objects WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise FileNotFoundError(f"no record at {self.url_for(key)}")
        return row[0]

    def open_read(self, key: str) -> IO[bytes]:
        return io.BytesIO(self.read(key))

    def exists(self, key: str) -> bool:
        return self._db().execute("SELECT 1 FROM objects WHERE key = ?", (key,)).fetchone() is not None

    def delete(self, key: str) -> None:
        self._db().execute("DELETE FROM objects WHERE key = ?", (key,))

    def list(self, prefix: str = "") -> Iterator[str]:
        # substr() compares the prefix literally (LIKE would treat % and _ as wildcards).
        rows = self._db().execute(
            "SELECT key FROM objects WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
        ).fetchall()
        # Internal keys (lock records) are listed only when asked for by prefix.
        return iter([key for (key,) in rows])  # everything: core keeps internal keys apart

    def stat(self, key: str) -> dict[str, Any]:
        row = self._db().execute("SELECT length(data) FROM objects WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise FileNotFoundError(f"no record at {self.url_for(key)}")
        return {"size": row[0]}


class JSONLinesSerializer(Serializer):
    """A list of JSON values, one per line (UTF-8); streamed by `dump` and `load`."""

    type = "jsonl"
    streaming = True

    def dumps(self, obj: Any) -> bytes:
        buf = io.BytesIO()
        self.dump(obj, buf)
        return buf.getvalue()

    def loads(self, data: bytes | memoryview) -> Any:
        return self.load(io.BytesIO(data))

    def dump(self, obj: Any, file: IO[bytes]) -> None:
        if not isinstance(obj, list):
            raise SerializationError(f"jsonl writes a list of JSON values, not {type(obj).__name__}")
        for item in obj:
            try:
                line = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
            except (TypeError, ValueError) as exc:
                raise SerializationError(f"jsonl cannot encode {item!r}: {exc}") from exc
            file.write(line.encode("utf-8") + b"\n")

    def load(self, file: IO[bytes]) -> Any:
        items = []
        for number, line in enumerate(file, 1):
            if not line.endswith(b"\n"):
                raise SerializationError(f"jsonl: line {number} is cut short")
            try:
                items.append(json.loads(line))
            except ValueError as exc:  # bad JSON or bad UTF-8
                raise SerializationError(f"jsonl: line {number} is not JSON: {exc}") from exc
        return items  # an empty payload is an empty list


@hookimpl
def register_storage_types(register):
    register(SQLiteStorage)


@hookimpl
def register_serializers(register):
    register(JSONLinesSerializer)
