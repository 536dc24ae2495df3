"""Flows end to end on S3, GCS and Azure servers: a block saved through the CLI,
used by slug; persisted in one process, served from cache in another; templated
keys; a compressed serializer; and (slow) a 200 MiB result."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner
from stashflow import ResultStore
from stashflow.cli import main

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


def run_flow(tmp_path, cloud, slug: str, counter) -> str:
    script = tmp_path / "report_flow.py"
    script.write_text(FLOW)
    env = {**os.environ, **cloud.env}
    out = subprocess.run([sys.executable, str(script), slug, str(counter)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


def test_a_flow_persists_to_a_cli_saved_block_and_a_new_process_is_served_from_cache(
        tmp_path, cloud):
    saved = CliRunner().invoke(main, ["block", "create", cloud.type_slug, "dev",
                                      *cloud.set_args()])
    assert saved.exit_code == 0, saved.output
    slug = f"{cloud.type_slug}/dev"
    listed = CliRunner().invoke(main, ["block", "ls"])
    assert slug in listed.output.split()
    counter = tmp_path / "bodies.txt"

    first = run_flow(tmp_path, cloud, slug, counter)
    assert first == "([0, 1, 4], 'hello world')"
    assert counter.read_text().split() == ["square"] * 3 + ["hello"]

    second = run_flow(tmp_path, cloud, slug, counter)
    assert second == first
    assert counter.read_text().split() == ["square"] * 3 + ["hello"]  # no body ran again

    names = cloud.names()
    assert f"{cloud.folder}/hello-world.pickle" in names  # the template, verbatim, in the folder
    assert all(n.startswith(f"{cloud.folder}/") for n in names)  # the folder, applied once
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


def test_a_flow_saved_block_from_python_rejects_a_traversing_template(tmp_path, cloud):
    from stashflow import flow, task
    from stashflow.exceptions import InvalidResultKey
    from stashflow.registry import get_registry, load_block

    cls = get_registry().storage_types[cloud.type_slug]
    cls(**cloud.fields).save("py")
    block = load_block(f"{cloud.type_slug}/py")

    @task(result_storage_key="{parameters[name]}.pickle")
    def hello(name):
        return name

    @flow(result_storage=block)
    def run(name):
        return hello(name)

    with pytest.raises(InvalidResultKey):
        run("../../escape")
    assert cloud.names() == []


@pytest.mark.slow
def test_a_200_mib_result_round_trips_through_a_flow(tmp_path, cloud):
    from stashflow import flow, task
    from stashflow.registry import get_registry

    block = get_registry().storage_types[cloud.type_slug](**cloud.fields)
    payload = os.urandom(1024) * (200 * 1024)

    @task(result_storage_key="big.pickle", cache_result_in_memory=False)
    def big():
        return payload

    @flow(result_storage=block)
    def run():
        return big.submit().result()

    assert run() == payload
    assert ResultStore(block).read_metadata("big.pickle").size >= len(payload)
