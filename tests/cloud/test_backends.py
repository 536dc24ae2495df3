"""The storage primitives of each cloud backend on its real server, beyond the plugin
authors' kit (which each plugin runs too): where objects really land, what a header read
fetches, what a reader of a replaced object gets, conditional creates raced by separate
clients, secrets and clients kept out of reprs and pickles."""

from __future__ import annotations

import io
import os
import pickle
import re
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from stashflow import ResultStore
from stashflow.exceptions import StorageError
from stashflow.locking import StorageLockManager, new_holder
from stashflow.records import read_header, write_record
from stashflow.registry import get_registry, resolve_serializer
from stashflow.storage import record_keys
from stashflow_test_io import Exploding, race

MiB = 1024 * 1024
PART = 8 * MiB  # the three backends' part (block) size


def test_registered_under_its_type_and_url_schemes(cloud):
    registry = get_registry()
    assert registry.storage_types[cloud.type_slug] is cloud.backend_class
    for scheme in cloud.schemes:
        assert registry.url_schemes[scheme] is cloud.backend_class


def test_importing_the_plugin_does_not_import_its_client(cloud):
    code = ("import sys, stashflow\n"
            "from stashflow.registry import get_registry\n"
            f"get_registry().storage_types[{cloud.type_slug!r}]\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {cloud.client_modules!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_keys_are_file_not_found_naming_the_object(backend):
    where = rf"{backend.type_slug}: no \w+ at {re.escape(backend.url_for('no/such/key'))}$"
    for call in (backend.read, backend.open_read, backend.stat):
        with pytest.raises(FileNotFoundError, match=where):
            call("no/such/key")


def test_stat_gives_size_mtime_and_version(backend):
    backend.write("s", b"12345")
    st = backend.stat("s")
    assert st["size"] == 5
    assert abs(st["mtime"] - time.time()) < 120
    assert st.get("etag") or st.get("generation")


@pytest.mark.parametrize("folder", ["results/v1", "/results/v1/", "results/v1/"])
def test_the_folder_is_applied_exactly_once(cloud, bucket, folder):
    backend = cloud.backend(bucket, folder)
    backend.write("k/1", b"1")
    with backend.open_write("k/2") as f:
        f.write(b"2")
    assert backend.create("k/3", b"3")
    assert cloud.names(bucket) == ["results/v1/k/1", "results/v1/k/2", "results/v1/k/3"]
    assert sorted(backend.list()) == ["k/1", "k/2", "k/3"]
    assert backend.url_for("k/2") == cloud.url(bucket, "results/v1/k/2")


def test_a_backend_at_the_bucket_root(cloud, bucket, backend):
    backend.write("k", b"in the folder")
    root = cloud.backend(bucket)
    root.write("x/y", b"1")
    root.write("z", b"2")
    assert sorted(root.list()) == ["results/v1/k", "x/y", "z"]
    assert list(root.list("x/")) == ["x/y"]
    assert root.read("results/v1/k") == b"in the folder"
    assert root.url_for() == cloud.url(bucket)
    assert root.url_for("z") == cloud.url(bucket, "z")


def test_list_is_relative_to_the_folder_and_gives_internal_keys_too(cloud, bucket, backend):
    for key in ("a/1", "a/2", "ab", "b/c/d"):
        backend.write(key, b"x")
    for name, data in [("results/v1/.stashflow-locks/a", b"lock"),
                       ("results/v1/a/.stashflow-tmp-1", b"tmp"),
                       ("results/v10/a/3", b"a sibling folder"),
                       ("results/other", b"outside the folder"),
                       ("results/v1/dir/", b"")]:  # a console's "folder" placeholder
        cloud.put_raw(bucket, name, data)
    assert sorted(backend.list()) == [".stashflow-locks/a", "a/.stashflow-tmp-1", "a/1", "a/2",
                                      "ab", "b/c/d"]
    assert sorted(record_keys(backend)) == ["a/1", "a/2", "ab", "b/c/d"]
    assert sorted(backend.list("a")) == ["a/.stashflow-tmp-1", "a/1", "a/2", "ab"]
    assert sorted(backend.list("a/")) == ["a/.stashflow-tmp-1", "a/1", "a/2"]
    assert sorted(backend.list("b/c")) == ["b/c/d"]
    assert list(backend.list("zzz")) == []
    assert list(backend.list(".stashflow-locks/")) == [".stashflow-locks/a"]


def test_open_read_reads_a_header_without_the_payload_and_seeks(backend):
    buf = io.BytesIO()
    meta = write_record(buf, os.urandom(4 * MiB), resolve_serializer("pickle"),
                        created=datetime.now(UTC))
    record = buf.getvalue()
    backend.write("rec", record)
    with backend.open_read("rec") as f:
        assert f.seekable()
        header, _ = read_header(f, "rec")
        assert header.size == meta.size
        assert f.fetched <= 64 * 1024  # one small ranged GET, not the 4 MiB payload
        assert f.seek(0, io.SEEK_END) == len(record)
        f.seek(-10, io.SEEK_END)
        assert f.read() == record[-10:]
        assert f.read(1) == b""
        f.seek(100)
        assert f.read(5) == record[100:105]
        f.seek(2 * MiB)
        into = bytearray(MiB)
        assert f.readinto(into) == MiB
        assert into == record[2 * MiB:3 * MiB]


def test_a_header_then_the_rest_fetches_each_byte_once(backend):
    data = os.urandom(3 * PART // 2)
    backend.write("big", data)
    with backend.open_read("big") as f:
        assert f.read(100) == data[:100]
        f.seek(50)
        assert f.read() == data[50:]
        assert f.fetched == len(data)


def test_a_reader_never_mixes_two_versions(backend):
    backend.write("g", b"A" * 200_000)
    with backend.open_read("g") as f:
        assert f.read(10) == b"A" * 10
        backend.write("g", b"B" * 200_000)
        with pytest.raises(StorageError, match=r"replaced .*while being read"):
            f.read()


def test_a_failed_write_publishes_nothing(cloud, bucket, backend):
    backend.write("k", b"old")
    for key, size in [("k", 2 * PART + 5), ("fresh", 2 * PART + 5), ("fresh", 1000)]:
        with pytest.raises(RuntimeError, match="producer died"):  # parts staged, then it dies
            backend.write(key, io.BufferedReader(Exploding(size)))
    with pytest.raises(RuntimeError, match="serializer failed"), backend.open_write("fresh") as f:
        f.write(b"partial")
        raise RuntimeError("serializer failed")
    assert backend.read("k") == b"old"
    assert not backend.exists("fresh")
    assert cloud.names(bucket) == ["results/v1/k"]


def test_create_is_create_if_absent(backend):
    assert backend.create("c/small", b"first") is True
    assert backend.create("c/small", b"second") is False
    assert backend.read("c/small") == b"first"
    assert backend.create("c/file", io.BytesIO(b"first")) is True
    assert backend.create("c/file", io.BytesIO(b"second")) is False
    assert backend.read("c/file") == b"first"
    big = os.urandom(PART + 1)  # in parts
    assert backend.create("c/big", io.BytesIO(big)) is True
    assert backend.create("c/big", big[::-1]) is False
    assert backend.read("c/big") == big


def test_creates_raced_by_separate_clients_have_one_winner(backend):
    # Separate block instances, as two workers would have, 20 times over.
    twins = [type(backend)(**backend.field_values(reveal_secrets=True)) for _ in range(2)]
    for round_ in range(20):
        key = f"race/{round_}"
        results = race(2, lambda i, key=key: twins[i].create(key, f"writer {i}".encode()))
        assert sorted(results) == [False, True], (round_, results)
        assert backend.read(key) == f"writer {results.index(True)}".encode()


def test_result_store_creates_raced_by_eight_threads_have_one_winner(backend):
    store = ResultStore(backend)
    results = race(8, lambda i: store.create("once", i))
    assert results.count(True) == 1
    assert store.read("once") == results.index(True)


def test_storage_locks_exclude_each_other(backend):
    locks = StorageLockManager(backend, default_lease=30)
    first, second = new_holder(), new_holder()
    assert locks.acquire("job", first, timeout=5)
    assert locks.is_locked("job")
    assert not locks.acquire("job", second, timeout=0.3)
    locks.release("job", first)
    assert locks.acquire("job", second, timeout=5)
    assert all(k.startswith(".stashflow/locks/") for k in backend.list(".stashflow"))
    assert list(backend.list(".stashflow"))
    locks.release("job", second)
    assert list(record_keys(backend)) == []  # lock records stay out of the results' listing


def test_secrets_never_shown_and_the_client_never_pickled(cloud, backend):
    for text in (repr(backend), str(backend), str(backend.field_values())):
        assert cloud.secret not in text
    assert cloud.secret in str(backend.field_values(reveal_secrets=True))
    backend.write("p", b"1")
    assert backend._fs is not None
    clone = pickle.loads(pickle.dumps(backend))
    assert clone._fs is None and clone == backend
    assert clone.read("p") == b"1"
