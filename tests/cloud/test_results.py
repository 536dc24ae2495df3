"""ResultStore on each cloud backend: by instance, URL, saved block and the default
block setting; records crossing processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from stashflow import ResultStore
from stashflow.exceptions import ResultNotFound

MiB = 1024 * 1024
VALUES = [None, 0, "text", b"\x00bytes", [1, 2.5, {"k": (1, 2)}], {"nested": {"set": {1, 2}}}]


def run_python(code: str, timeout: float = 120) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("serializer", ["pickle", "json", "msgpack"])
def test_result_store_round_trip_on_an_instance(cloud, bucket, backend, serializer):
    store = ResultStore(backend, serializer=serializer)
    value = {"a": [1, 2, 3], "b": "text"}
    store.write("task/abc", value)
    record = store.read_record("task/abc")
    assert record.value == value
    assert record.metadata.serializer == serializer
    assert store.read_metadata("task/abc").size == record.metadata.size
    assert store.exists("task/abc")
    assert list(store.list("task/")) == ["task/abc"]
    assert cloud.names(bucket) == ["results/v1/task/abc"]
    store.delete("task/abc")
    assert not store.exists("task/abc")
    with pytest.raises(ResultNotFound):
        store.read("task/abc")


def test_result_store_by_url(cloud, bucket, monkeypatch):
    cloud.set_env(monkeypatch)  # the URL names no endpoint or credential: the environment does
    for scheme in cloud.schemes:
        store = ResultStore(f"{scheme}://{bucket}/by-url/{scheme}")
        assert isinstance(store.storage, cloud.backend_class)
        for i, value in enumerate(VALUES):
            store.write(f"v{i}", value)
        again = ResultStore(cloud.url(bucket, f"by-url/{scheme}"))
        assert [again.read(f"v{i}") for i in range(len(VALUES))] == VALUES
    assert cloud.names(bucket) == sorted(f"by-url/{scheme}/v{i}" for scheme in cloud.schemes
                                         for i in range(len(VALUES)))


def test_result_store_create_and_expiration(backend):
    store = ResultStore(backend, serializer="json")
    assert store.create("lock", {"owner": 1}) is True
    assert store.create("lock", {"owner": 2}) is False
    assert store.read("lock") == {"owner": 1}
    store.write("old", "x", expiration=timedelta(seconds=-1))
    with pytest.raises(ResultNotFound):
        store.read("old")
    assert not store.is_valid("old")


def test_saved_block_is_private_masked_and_usable_by_slug(cloud, bucket, backend, stashflow_home):
    assert backend.save("b") == f"{cloud.type_slug}/b"
    path = stashflow_home / "blocks" / cloud.type_slug / "b.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = cloud.backend_class.load("b")
    assert loaded == backend
    for shown in (repr(backend), repr(loaded), str(loaded), str(loaded.field_values())):
        assert cloud.secret not in shown
    ResultStore(f"{cloud.type_slug}/b").write("k", 42)
    assert ResultStore(backend).read("k") == 42
    assert cloud.names(bucket) == ["results/v1/k"]

    keyed = cloud.backend_class(**{**cloud.fields("elsewhere"), cloud.secret_field: "hunter2-not-a-key"})
    keyed.save("keyed")
    for shown in (repr(keyed), repr(cloud.backend_class.load("keyed")), str(keyed.field_values())):
        assert "hunter2" not in shown
    saved = json.loads((path.parent / "keyed.json").read_text())
    assert saved["fields"][cloud.secret_field] == "hunter2-not-a-key"  # in a file only its owner reads


def test_the_default_storage_block_setting(cloud, backend, monkeypatch):
    backend.save("default")
    monkeypatch.setenv("STASHFLOW_DEFAULT_RESULT_STORAGE_BLOCK", f"{cloud.type_slug}/default")
    store = ResultStore()
    assert store.storage == backend
    store.write("k", 42)
    assert ResultStore(backend).read("k") == 42


def test_records_cross_between_processes(cloud, backend):
    backend.save("shared")
    ResultStore(backend).write("from-parent", ("parent", b"\x00" * 1000))
    run_python(f"""
        from stashflow import ResultStore
        store = ResultStore("{cloud.type_slug}/shared")
        assert store.read("from-parent") == ("parent", b"\\x00" * 1000)
        store.write("from-child", {{"pid": "child", "data": list(range(5))}})
    """)
    assert ResultStore(backend).read("from-child") == {"pid": "child", "data": [0, 1, 2, 3, 4]}
