"""Flows end to end on each cloud backend: a block saved through the CLI, used by slug;
persisted in one process, served from cache in another; templated keys; a compressed
serializer; a traversing key refused; and (slow) a 200 MiB result, persisted and then
served from cache in fresh processes whose peak memory is measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner
from stashflow import ResultStore
from stashflow.cli import main

MiB = 1024 * 1024

FLOW = textwrap.dedent('''
    import sys
    from stashflow import flow, task
    from stashflow.cache_policies import INPUTS

    slug, counter = sys.argv[1], sys.argv[2]

    def count(mark):
        with open(counter, "a") as f:
            f.write(mark + "\\n")

    @task(cache_policy=INPUTS, result_serializer="compressed/json")
    def square(x):
        count("square")
        return {"x": x, "square": x * x}

    @task(result_storage_key="hello-{parameters[name]}.pickle")
    def hello(name):
        count("hello")
        return f"hello {name}"

    @flow(result_storage=slug)
    def report():
        return [square(i)["square"] for i in range(3)], hello("world")

    print(report())
''')


def run_python(*args: str, timeout: float = 120) -> str:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                         timeout=timeout, env=os.environ.copy())
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


def run_flow(tmp_path, slug: str, counter) -> str:
    script = tmp_path / "report_flow.py"
    script.write_text(FLOW)
    return run_python(str(script), slug, str(counter))


def test_a_flow_persists_to_a_cli_saved_block_and_a_new_process_is_served_from_cache(
        tmp_path, cloud, bucket):
    fields = cloud.fields(bucket, "runs")
    set_args = [arg for k, v in fields.items() for arg in ("--set", f"{k}={v}")]
    saved = CliRunner().invoke(main, ["block", "create", cloud.type_slug, "dev", *set_args])
    assert saved.exit_code == 0, saved.output
    slug = f"{cloud.type_slug}/dev"
    listed = CliRunner().invoke(main, ["block", "ls"])
    assert slug in listed.output.split()
    counter = tmp_path / "bodies.txt"

    first = run_flow(tmp_path, slug, counter)
    assert first == "([0, 1, 4], 'hello world')"
    assert counter.read_text().split() == ["square"] * 3 + ["hello"]

    second = run_flow(tmp_path, slug, counter)
    assert second == first
    assert counter.read_text().split() == ["square"] * 3 + ["hello"]  # no body ran again

    names = cloud.names(bucket)
    assert "runs/hello-world.pickle" in names  # the template, verbatim, in the folder
    assert all(n.startswith("runs/") for n in names)  # the folder, applied once
    store = ResultStore(slug)
    assert store.read("hello-world.pickle") == "hello world"
    by_serializer: dict[str, list[str]] = {}
    for key in store.list():
        if key != "hello-world.pickle":
            by_serializer.setdefault(store.read_metadata(key).serializer, []).append(key)
    assert len(by_serializer.pop("compressed/json")) == 3  # the squares, keyed by their inputs
    flow_keys = by_serializer.pop("pickle")  # each flow run's own result, under a uuid4 hex
    assert len(flow_keys) == 2 and all(len(k) == 32 for k in flow_keys)
    assert by_serializer == {}


def test_a_flow_saved_block_from_python_rejects_a_traversing_template(cloud, bucket):
    from stashflow import flow, task
    from stashflow.exceptions import InvalidResultKey
    from stashflow.registry import load_block

    cloud.backend(bucket, "runs").save("py")
    block = load_block(f"{cloud.type_slug}/py")

    @task(result_storage_key="{parameters[name]}.pickle")
    def hello(name):
        return name

    @flow(result_storage=block)
    def run(name):
        return hello(name)

    with pytest.raises(InvalidResultKey):
        run("../../escape")
    assert cloud.names(bucket) == []


# Each phase runs in a fresh process and reads VmHWM, the kernel's peak RSS of the process
# (unlike ru_maxrss, it does not inherit the parent's peak). The baseline is taken after
# imports and a first request, and for the write after the value exists: growth is what
# persisting or loading the value costs.
BIG_FLOW = textwrap.dedent("""
    import hashlib, json, sys, time
    from stashflow import ResultStore, flow, task

    slug, size = sys.argv[1], int(sys.argv[2])

    def peak_rss():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))

    @task(result_storage_key="big.pickle", cache_result_in_memory=False)
    def big():
        return payload  # a NameError in the phase that has none: it must be served from cache

    @flow(result_storage=slug)
    def persist():
        big.submit().wait()

    @flow(result_storage=slug)
    def load():
        future = big.submit()
        value = future.result()
        return future.final_state().is_cached(), len(value), hashlib.sha256(value).hexdigest()

    ResultStore(slug).storage.exists("warm-up")  # import the client and connect
    if size:
        payload = bytes(range(256)) * (size // 256)
        out = {"digest": hashlib.sha256(payload).hexdigest()}
        base, start = peak_rss(), time.perf_counter()
        persist()
    else:
        base, start = peak_rss(), time.perf_counter()
        cached, length, digest = load()
        out = {"cached": cached, "size": length, "digest": digest}
    out.update(growth=peak_rss() - base, seconds=time.perf_counter() - start)
    print(json.dumps(out))
""")
# Peak RSS growth allowed, in payloads. The contract (issue 4): no more than about one
# extra copy. Writes to GCS and Azure measure ~0.2x alone and have reached 0.72x under
# the full suite (allocator arenas); a load holds the value itself, plus at most one copy.
MAX_WRITE_GROWTH = {"s3": 2.0, "gcs": 1.0, "azure": 1.0}
MAX_READ_GROWTH = {"s3": 2.0, "gcs": 2.0, "azure": 2.0}


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_a_200_mib_result_persists_and_loads_in_bounded_memory(tmp_path, cloud, bucket):
    cloud.backend(bucket, "runs").save("big")
    script, size = tmp_path / "big_flow.py", 200 * MiB
    script.write_text(BIG_FLOW)
    w = json.loads(run_python(str(script), f"{cloud.type_slug}/big", str(size), timeout=600))
    r = json.loads(run_python(str(script), f"{cloud.type_slug}/big", "0", timeout=600))
    print(f"{cloud.name} 200 MiB: persist {w['seconds']:.1f} s, peak RSS growth "
          f"{w['growth'] / MiB:.0f} MiB; load {r['seconds']:.1f} s, peak RSS growth "
          f"{r['growth'] / MiB:.0f} MiB (the value itself is 200 MiB)")
    assert (r["cached"], r["size"], r["digest"]) == (True, size, w["digest"])
    assert ResultStore(cloud.backend(bucket, "runs")).read_metadata("big.pickle").size >= size
    assert w["growth"] <= MAX_WRITE_GROWTH[cloud.name] * size, w  # streamed out
    assert r["growth"] <= MAX_READ_GROWTH[cloud.name] * size, r
