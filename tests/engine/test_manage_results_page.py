"""Each example of Prefect's "Manage results" page, with stashflow's names, behaves as described."""

import gc
import re
import weakref

import pytest
from click.testing import CliRunner
from stashflow import ResultStore, flow, task
from stashflow.cli import main as cli
from stashflow.records import read_header

UUID_HEX = re.compile(r"[0-9a-f]{32}")


def config_set(*pairs):
    result = CliRunner().invoke(cli, ["config", "set", *pairs])
    assert result.exit_code == 0, result.output


def test_results_are_not_persisted_by_default(storage_root, files):
    @task
    def my_task():
        return 42

    @flow
    def my_flow():
        return my_task()

    assert my_flow() == 42
    assert files(storage_root) == []


def test_config_set_persist_by_default_persists_tasks_and_flows(storage_root, files):
    config_set("STASHFLOW_RESULTS_PERSIST_BY_DEFAULT=true")

    @task
    def my_task():
        return 42

    @flow
    def my_flow():
        return my_task(return_state=True)

    state = my_flow(return_state=True)
    task_state = state.result()
    written = files(storage_root)
    assert len(written) == 2  # the task's record (its cache key) and the flow's (a uuid4 hex)
    assert state.key in written and UUID_HEX.fullmatch(state.key)
    assert task_state.key in written
    assert ResultStore(storage_root).read(task_state.key) == 42
    assert ResultStore(storage_root).read(state.key).key == task_state.key


def test_config_set_local_storage_path_moves_the_default_storage(tmp_path, storage_root, files):
    target = tmp_path / "my-results"
    config_set("STASHFLOW_RESULTS_PERSIST_BY_DEFAULT=true", f"STASHFLOW_LOCAL_STORAGE_PATH={target}")

    @task
    def my_task():
        return "here"

    my_task()
    assert len(files(target)) == 1
    assert files(storage_root) == []


def test_local_storage_path_tilde_is_expanded(tmp_path, monkeypatch, files):
    monkeypatch.setenv("HOME", str(tmp_path))
    config_set("STASHFLOW_LOCAL_STORAGE_PATH=~/.my-results/")

    @task(persist_result=True)
    def my_task():
        return 1

    my_task()
    assert len(files(tmp_path / ".my-results")) == 1


@pytest.mark.parametrize("option", [
    {"persist_result": True},
    {"result_storage_key": "fixed.pickle"},
    {"result_serializer": "json"},
    {"cache_key_fn": lambda context, parameters: "by-fn"},
])
def test_any_persistence_keyword_on_a_task_enables_persistence(option, storage_root, files):
    @task(**option)
    def my_task():
        return 7

    assert my_task() == 7
    assert len(files(storage_root)) == 1


def test_result_storage_keyword_and_explicit_cache_policy_enable_persistence(tmp_path, files):
    from stashflow.cache_policies import INPUTS

    @task(result_storage=tmp_path / "a")
    def stored():
        return 1

    @task(cache_policy=INPUTS)
    def policy(x):
        return x

    stored()
    policy(3)
    assert len(files(tmp_path / "a")) == 1
    assert len(files(tmp_path / "stashflow-home" / "storage")) == 1


def test_persisting_flow_makes_its_tasks_persist_and_task_settings_win(tmp_path, files):
    @task
    def my_task():
        return 42

    unpersisted_task = my_task.with_options(persist_result=False)

    @flow(persist_result=True, result_storage=tmp_path / "flow-store")
    def my_flow():
        return [my_task(return_state=True), unpersisted_task(return_state=True)]

    persisted, unpersisted = my_flow()
    assert persisted.key is not None
    assert unpersisted.key is None
    # the task record and the flow record, nothing for the unpersisted task
    assert len(files(tmp_path / "flow-store")) == 2


def test_page_example_flow_storage_inherited_and_per_task_storage(tmp_path, files):
    from stashflow_local import LocalFileSystem

    test_block = LocalFileSystem(basepath=str(tmp_path / "test-bucket"))
    test_block.save("test-block")
    LocalFileSystem(basepath=str(tmp_path / "dev-bucket")).save("my-dev-block")

    @task
    def my_task():
        return 42

    unpersisted_task = my_task.with_options(persist_result=False)
    other_storage_task = my_task.with_options(result_storage=test_block)

    @flow(result_storage="local-file-system/my-dev-block")
    def my_flow():
        my_task()  # this task will use the flow's result storage
        unpersisted_task()  # this task will not persist results at all
        other_storage_task()  # this task will persist results to its own storage

    my_flow()
    dev, test = files(tmp_path / "dev-bucket"), files(tmp_path / "test-bucket")
    assert len(test) == 1  # other_storage_task
    assert len(dev) == 2  # my_task and the flow's own record (result_storage persists the flow)
    assert ResultStore(test_block).read(test[0]) == 42


def test_default_result_storage_block_setting_and_explicit_override(tmp_path, files):
    from stashflow_local import LocalFileSystem

    LocalFileSystem(basepath=str(tmp_path / "prod")).save("my-prod-block")
    config_set("STASHFLOW_DEFAULT_RESULT_STORAGE_BLOCK=local-file-system/my-prod-block")

    @task(persist_result=True)
    def my_task():
        return 1

    @flow(result_storage=tmp_path / "explicit")
    def my_flow():
        return my_task()

    my_task()
    assert len(files(tmp_path / "prod")) == 1
    my_flow()
    assert len(files(tmp_path / "explicit")) == 2
    assert len(files(tmp_path / "prod")) == 1


def test_templated_key_writes_one_file_per_name_in_the_storage_root(storage_root, files):
    calls = []

    @task(result_storage_key="hello-{parameters[name]}.pickle")
    def hello_world(name: str = "world"):
        calls.append(name)
        return f"hello {name}"

    @flow
    def my_flow():
        return [hello_world(), hello_world(name="foo"), hello_world(name="bar")]

    assert my_flow() == ["hello world", "hello foo", "hello bar"]
    assert files(storage_root) == ["hello-bar.pickle", "hello-foo.pickle", "hello-world.pickle"]
    assert ResultStore(storage_root).read("hello-foo.pickle") == "hello foo"
    # If a result exists at the key, the task loads it without running.
    assert my_flow() == ["hello world", "hello foo", "hello bar"]
    assert calls == ["world", "foo", "bar"]


def test_templated_key_is_loaded_by_a_second_process(storage_root, run_script, tmp_path):
    script = f"""
        from pathlib import Path
        from stashflow import flow, task

        COUNTER = Path({str(tmp_path / "counter")!r})

        @task(result_storage_key="hello-{{parameters[name]}}.pickle")
        def hello_world(name: str = "world"):
            with COUNTER.open("a") as f:
                f.write(name + "\\n")
            return f"hello {{name}}"

        @flow
        def my_flow():
            return hello_world(return_state=True)

        state = my_flow()
        print(state.name, state.result())
    """
    assert run_script(script).split() == ["Completed", "hello", "world"]
    assert run_script(script).split() == ["Cached", "hello", "world"]
    assert (tmp_path / "counter").read_text() == "world\n"
    assert (storage_root / "hello-world.pickle").is_file()


def test_result_storage_key_wins_over_cache_key_fn(storage_root, files):
    @task(result_storage_key="from-template", cache_key_fn=lambda c, p: "from-fn")
    def t():
        return 1

    t()
    assert files(storage_root) == ["from-template"]


def _serializer_of(path):
    with open(path, "rb") as f:
        return read_header(f, None)[0].serializer


@pytest.mark.parametrize("spec,name", [
    ("json", "json"),
    ("pickle", "pickle"),
    ("msgpack", "msgpack"),
    ("compressed/json", "compressed/json"),
    ("compressed/pickle", "compressed/pickle"),
])
def test_result_serializer_by_name(spec, name, storage_root):
    @task(result_serializer=spec, result_storage_key="value")
    def t():
        return {"numbers": [1, 2, 3], "text": "x" * 200}

    t()
    assert _serializer_of(storage_root / "value") == name
    assert ResultStore(storage_root).read("value") == {"numbers": [1, 2, 3], "text": "x" * 200}


def test_result_serializer_instance_on_task_and_flow(storage_root):
    from stashflow_compressed import CompressedSerializer

    big = {"rows": ["the same line of text"] * 500}

    @task(result_storage_key="task-value")
    def t():
        return big

    @flow(result_serializer=CompressedSerializer(serializer="json", codec="lzma"))
    def f():
        return t()

    flow_state = f(return_state=True)
    assert _serializer_of(storage_root / "task-value") == "compressed/json"
    assert _serializer_of(storage_root / flow_state.key) == "compressed/json"
    assert (storage_root / "task-value").stat().st_size < 500
    assert ResultStore(storage_root).read("task-value") == big


def test_default_serializer_setting(storage_root):
    config_set("STASHFLOW_RESULTS_DEFAULT_SERIALIZER=json")

    @task(result_storage_key="v")
    def t():
        return [1, 2]

    t()
    assert _serializer_of(storage_root / "v") == "json"


class Big:
    def __init__(self, text):
        self.text = text

    def __eq__(self, other):
        return isinstance(other, Big) and other.text == self.text


def test_cache_result_in_memory_false_keeps_no_reference_and_reloads(storage_root):
    @task(cache_result_in_memory=False, persist_result=True)
    def bar():
        value = Big("pretend this is biiiig data")
        refs.append(weakref.ref(value))
        return value

    refs = []

    @flow
    def foo():
        future = bar.submit()
        future.wait()
        gc.collect()
        dropped = refs[0]() is None
        first, second = future.result(), future.result()
        return dropped, first, second, future.state

    dropped, first, second, state = foo()
    assert dropped  # once the record is durable the engine holds no reference
    assert first == second == Big("pretend this is biiiig data")
    assert first is not second  # each result() loads the record again
    assert state.name == "Completed" and state.key in [p.name for p in storage_root.iterdir()]


def test_cache_result_in_memory_true_returns_the_same_object():
    @task(persist_result=True)
    def bar():
        return Big("data")

    @flow
    def foo():
        future = bar.submit()
        return future.result(), future.result()

    first, second = foo()
    assert first is second


def test_flow_cache_result_in_memory_false_loads_from_storage(storage_root):
    @flow(cache_result_in_memory=False, persist_result=True)
    def foo():
        return Big("pretend this is large data")

    state = foo(return_state=True)
    assert state.result() == state.result() == Big("pretend this is large data")
    assert state.result() is not state.result()
    assert (storage_root / state.key).is_file()


def test_persist_result_false_wins_over_implying_keywords(tmp_path, storage_root, files):
    @task(persist_result=False, result_storage=tmp_path / "s", result_storage_key="k",
          result_serializer="json", cache_key_fn=lambda c, p: "fn")
    def t():
        return 1

    assert t(return_state=True).key is None
    assert files(tmp_path) == []
