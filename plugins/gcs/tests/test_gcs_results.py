"""GcsBucket under ResultStore: by instance, URL and saved block; other processes; faults."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
from stashflow import ResultStore
from stashflow.exceptions import ResultNotFound
from stashflow_gcs import GcsBucket

MiB = 1024 * 1024


def run_python(code: str, timeout: float = 120) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_registered_under_its_type_slug_and_url_schemes():
    from stashflow.registry import get_registry

    registry = get_registry()
    assert registry.storage_types["gcs-bucket"] is GcsBucket
    assert registry.url_schemes["gs"] is GcsBucket
    assert registry.url_schemes["gcs"] is GcsBucket


def test_importing_the_plugin_does_not_import_gcsfs():
    out = run_python("""
        import sys
        import stashflow, stashflow_gcs
        from stashflow.registry import get_registry
        get_registry()
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("gcsfs", "google", "aiohttp")))
    """)
    assert out.strip() == "[]"


def test_result_store_round_trip_on_an_instance(backend, gcs_client, bucket):
    store = ResultStore(backend)
    store.write("task/abc", {"x": [1, 2]})
    record = store.read_record("task/abc")
    assert record.value == {"x": [1, 2]}
    assert record.metadata.serializer == "pickle"
    assert store.read_metadata("task/abc").size == record.metadata.size
    assert store.exists("task/abc")
    assert list(store.list()) == ["task/abc"]
    assert sorted(gcs_client.find(bucket)) == [f"{bucket}/results/v1/task/abc"]
    store.delete("task/abc")
    with pytest.raises(ResultNotFound):
        store.read("task/abc")


def test_result_store_create_is_create_if_absent(backend):
    store = ResultStore(backend, serializer="json")
    assert store.create("lock", {"owner": 1}) is True
    assert store.create("lock", {"owner": 2}) is False
    assert store.read("lock") == {"owner": 1}


def test_result_store_by_url(gcs_server, gcs_client, bucket, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url)  # and no token: anonymous
    for scheme in ("gs", "gcs"):
        store = ResultStore(f"{scheme}://{bucket}/by-url", serializer="json")
        assert isinstance(store.storage, GcsBucket)
        store.write(f"{scheme}-key", [1, 2, 3])
        assert ResultStore(f"gs://{bucket}/by-url").read(f"{scheme}-key") == [1, 2, 3]
    assert sorted(gcs_client.find(bucket)) == [f"{bucket}/by-url/gcs-key",
                                               f"{bucket}/by-url/gs-key"]


def test_saved_block_is_private_masked_and_usable_by_slug(backend, stashflow_home):
    assert backend.save("b") == "gcs-bucket/b"
    path = stashflow_home / "blocks" / "gcs-bucket" / "b.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert GcsBucket.load("b") == backend
    ResultStore("gcs-bucket/b").write("k", 42)
    assert ResultStore(backend).read("k") == 42

    secret = '{"type": "service_account", "private_key": "hunter2-not-a-key"}'
    keyed = GcsBucket(bucket="b", project="p", token=secret)
    keyed.save("keyed")
    assert "hunter2" not in repr(keyed)
    assert "hunter2" not in repr(GcsBucket.load("keyed"))
    assert "hunter2" not in str(keyed.field_values())
    saved = json.loads((stashflow_home / "blocks" / "gcs-bucket" / "keyed.json").read_text())
    assert saved["fields"]["token"] == secret  # kept, in a file only its owner can read


def test_records_cross_between_processes(backend, stashflow_home):
    backend.save("shared")
    ResultStore(backend).write("from-parent", {"n": 1})
    run_python("""
        from stashflow import ResultStore
        store = ResultStore("gcs-bucket/shared")
        assert store.read("from-parent") == {"n": 1}
        store.write("from-child", [1, 2, 3])
    """)
    assert ResultStore(backend).read("from-child") == [1, 2, 3]


@pytest.mark.slow
def test_200_mib_round_trip_streams_in_bounded_memory(backend, stashflow_home):
    """Peak RSS growth, measured in fresh processes: writing, then reading, 200 MiB."""
    backend.save("big")
    size = 200 * MiB
    common = """
        import json, hashlib, time
        from stashflow import ResultStore
        def peak_rss():  # VmHWM: this process's own peak (ru_maxrss inherits the parent's)
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
        store = ResultStore("gcs-bucket/big")
        store.storage.exists("warm-up")  # import gcsfs and connect before measuring
    """
    write = run_python(common + f"""
        payload = bytes(range(256)) * ({size} // 256)
        digest = hashlib.sha256(payload).hexdigest()
        base, start = peak_rss(), time.perf_counter()
        store.write("big", payload)
        seconds = time.perf_counter() - start
        peak = peak_rss()
        print(json.dumps({{"growth": peak - base, "digest": digest, "seconds": seconds}}))
    """, timeout=600)
    read = run_python(common + """
        base, start = peak_rss(), time.perf_counter()
        value = store.read("big")
        seconds = time.perf_counter() - start
        peak = peak_rss()
        print(json.dumps({"growth": peak - base, "digest": hashlib.sha256(value).hexdigest(),
                          "size": len(value), "seconds": seconds}))
    """, timeout=600)
    w, r = json.loads(write), json.loads(read)
    print(f"GCS 200 MiB: write {w['seconds']:.1f} s, peak RSS growth {w['growth'] / MiB:.0f} "
          f"MiB; read {r['seconds']:.1f} s, peak RSS growth {r['growth'] / MiB:.0f} MiB "
          "(the value itself is 200 MiB)")
    assert r["size"] == size and r["digest"] == w["digest"]
    # The contract (issue 4): no more than about one extra copy. Alone this measures
    # ~0.2x; under a full parallel-heavy suite it has reached 0.72x (allocator arenas).
    assert w["growth"] < 1.0 * size, w  # the payload is already in memory: streamed out
    assert r["growth"] < 2 * size, r  # the value, plus at most about one extra copy
