"""Cache keys, cache hits and misses, expiry, refresh, corrupt records and traversal."""

import time
import warnings
from datetime import timedelta

import pytest
from stashflow import ResultStore, flow, task
from stashflow.cache_policies import (
    DEFAULT,
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    RUN_ID,
    TASK_SOURCE,
    CachePolicy,
    hash_inputs,
)
from stashflow.engine import CacheWarning
from stashflow.exceptions import CacheKeyError, InvalidResultKey, TemplateError
from stashflow_local import LocalFileSystem


def test_cross_process_cache_hit_does_not_run_the_body(run_script, tmp_path, storage_root):
    script = f"""
        from pathlib import Path
        from stashflow import flow, task
        from stashflow.cache_policies import INPUTS, TASK_SOURCE

        COUNTER = Path({str(tmp_path / "counter")!r})

        @task(cache_policy=INPUTS + TASK_SOURCE)
        def expensive(x, options):
            with COUNTER.open("a") as f:
                f.write("ran\\n")
            return {{"x": x, "squared": x * x}}

        @flow
        def pipeline():
            return expensive(12, {{"mode": {{"fast", "exact"}}, "scale": 1.5}}, return_state=True)

        state = pipeline()
        print(state.name, state.key, state.result())
    """
    first = run_script(script).split(" ", 2)
    second = run_script(script, env={"PYTHONHASHSEED": "12345"}).split(" ", 2)
    assert first[0] == "Completed" and second[0] == "Cached"
    assert first[1] == second[1]  # same key in another process, another hash seed
    assert second[2].strip() == "{'x': 12, 'squared': 144}"
    assert (tmp_path / "counter").read_text() == "ran\n"
    assert (storage_root / first[1]).is_file()


def test_input_hash_is_independent_of_pythonhashseed(run_script):
    script = """
        import dataclasses
        from stashflow.cache_policies import hash_inputs

        @dataclasses.dataclass
        class Point:
            x: float
            tags: frozenset

        class Plain:
            def __init__(self):
                self.members = {"ann", "bob", "cy"}

        value = {
            "words": {"alpha", "beta", "gamma", "delta", "epsilon"},
            "mapping": {"b": {1, 2, 3}, "a": [1.5, -0.0, b"bytes"], ("t", 1): None},
            "point": Point(0.1, frozenset({"x", "y", "z"})),
            "object": Plain(),
        }
        print(hash_inputs({"data": value, "n": 10**30}))
    """
    keys = {run_script(script, env={"PYTHONHASHSEED": seed}).strip() for seed in ("0", "1", "987")}
    assert len(keys) == 1


def test_canonical_hashing_distinguishes_types_and_folds_equal_values():
    assert hash_inputs({"a": "1"}) != hash_inputs({"a": 1})
    assert hash_inputs({"a": b"x"}) != hash_inputs({"a": "x"})
    assert hash_inputs({"a": (1, 2)}) != hash_inputs({"a": [1, 2]})
    assert hash_inputs({"a": 0.0}) != hash_inputs({"a": -0.0})  # copysign(1, x) tells them apart
    assert hash_inputs({"a": float("nan")}) == hash_inputs({"a": -float("nan")})
    assert hash_inputs({"a": {1: "x", 2: "y"}}) == hash_inputs({"a": {2: "y", 1: "x"}})
    assert hash_inputs({"a": 1, "b": 2}) == hash_inputs({"b": 2, "a": 1})


def test_hashing_never_imports_numpy(run_script):
    out = run_script("""
        import sys
        from stashflow.cache_policies import hash_inputs
        hash_inputs({"a": [1, 2.5, {"x"}], "b": object.__new__(type("C", (), {}))})
        print("numpy" in sys.modules)
    """)
    assert out.strip() == "False"


def test_numpy_arrays_hash_by_dtype_shape_and_bytes():
    np = pytest.importorskip("numpy")
    a = np.arange(6, dtype="int64")
    assert hash_inputs({"a": a}) == hash_inputs({"a": np.arange(6, dtype="int64")})
    assert hash_inputs({"a": a}) != hash_inputs({"a": a.reshape(2, 3)})
    assert hash_inputs({"a": a}) != hash_inputs({"a": a.astype("int32")})


def test_unhashable_input_raises_cache_key_error_naming_the_argument():
    import threading

    @task(cache_policy=INPUTS)
    def t(good, lock):
        return 1

    with pytest.raises(CacheKeyError, match="'lock'"):
        t(1, threading.Lock())


def test_excluded_input_does_not_change_the_key(storage_root):
    calls = []

    @task(cache_policy=INPUTS - "logger")
    def t(x, logger):
        calls.append(x)
        return x

    assert t(1, object()) == 1
    assert t(1, object()) == 1
    assert calls == [1]


def test_default_policy_caches_within_a_flow_run_only():
    calls = []

    @task(persist_result=True)
    def t(x):
        calls.append(x)
        return x

    @flow
    def f():
        return [t(1, return_state=True).name, t(1, return_state=True).name]

    assert f() == ["Completed", "Cached"]
    assert f() == ["Completed", "Cached"]
    assert calls == [1, 1]
    assert DEFAULT == INPUTS + TASK_SOURCE + RUN_ID


def test_task_source_change_invalidates_the_cache():
    namespace = {}
    for body in ("return x + 1", "return x + 2"):
        exec(f"def t(x):\n    {body}\n", namespace)
        state = task(namespace["t"], cache_policy=INPUTS + TASK_SOURCE)(1, return_state=True)
        assert state.name == "Completed"


def test_flow_parameters_policy():
    calls = []

    @task(cache_policy=FLOW_PARAMETERS)
    def t():
        calls.append(1)
        return len(calls)

    @flow
    def f(n):
        return t()

    assert f(1) == 1
    assert f(1) == 1
    assert f(2) == 2


def test_no_cache_never_hits_but_can_persist(storage_root, files):
    calls = []

    @task(cache_policy=NO_CACHE, persist_result=True)
    def t():
        calls.append(1)
        return 5

    t()
    t()
    assert len(calls) == 2
    assert len(files(storage_root)) == 2


def test_cache_key_fn_return_is_the_storage_key_verbatim(storage_root, files):
    @task(cache_key_fn=lambda context, parameters: f"reports/{parameters['day']}.pkl")
    def t(day):
        return day.upper()

    t("monday")
    assert files(storage_root) == ["reports/monday.pkl"]
    assert t("monday", return_state=True).name == "Cached"


def test_cache_key_fn_traversal_is_refused(tmp_path, files):
    @task(cache_key_fn=lambda c, p: "../escaped", result_storage=tmp_path / "root")
    def t():
        return 1

    with pytest.raises(InvalidResultKey):
        t()
    assert files(tmp_path) == []


def test_templated_key_traversal_is_refused_and_nothing_is_written(tmp_path, files):
    root = tmp_path / "store" / "root"

    @task(result_storage_key="hello-{parameters[name]}.pickle", result_storage=root)
    def hello(name):
        return name

    for evil in ("../../x", "/../x", "/etc/passwd\x00", "a\\..\\..\\b"):
        with pytest.raises(InvalidResultKey):
            hello(evil)

    @task(result_storage_key="{parameters[name]}", result_storage=root)
    def bare(name):
        return name

    for evil in ("..", "../x", "/abs", "a//b", ".stashflow-tmp-x"):
        with pytest.raises(InvalidResultKey):
            bare(evil)
    assert files(tmp_path) == []


@pytest.mark.parametrize("template", [
    "{foo}", "{flow_run.parameters}", "{task_run.tags}", "{parameters[missing]}",
    "{parameters[name].__class__}", "{}", "{0}", "x-{parameters[name]:{flow_run.id}}",
    "{task_run.id.__class__}",
])
def test_template_fields_outside_the_allowed_set_fail_at_decoration(template):
    with pytest.raises(TemplateError):
        @task(result_storage_key=template)
        def hello(name):
            return name


def test_template_flow_and_task_run_fields(storage_root, files):
    @task(result_storage_key="{flow_run.flow_name}/{task_run.task_name}-{parameters[n]:03d}")
    def step(n):
        return n

    @flow(name="nightly")
    def f():
        return step(7)

    f()
    assert files(storage_root) == ["nightly/step-007"]


def test_template_needing_a_flow_run_fails_outside_a_flow():
    @task(result_storage_key="{flow_run.id}")
    def t():
        return 1

    with pytest.raises(TemplateError, match="outside a flow"):
        t()


def test_expired_record_is_a_miss(storage_root):
    calls = []

    @task(result_storage_key="k", cache_expiration=0.3)
    def t():
        calls.append(1)
        return len(calls)

    assert t() == 1
    assert t() == 1
    time.sleep(0.35)
    assert t() == 2
    assert ResultStore(storage_root).read_record("k").metadata.expiration is not None


def test_cache_expiration_accepts_timedelta(storage_root):
    @task(result_storage_key="k", cache_expiration=timedelta(hours=1))
    def t():
        return 1

    t()
    meta = ResultStore(storage_root).read_metadata("k")
    assert timedelta(minutes=59) < meta.expiration - meta.created <= timedelta(hours=1)


def test_refresh_cache_runs_and_overwrites(storage_root):
    calls = []

    @task(result_storage_key="k")
    def t():
        calls.append(1)
        return len(calls)

    assert t() == 1
    assert t.with_options(refresh_cache=True)() == 2
    assert ResultStore(storage_root).read("k") == 2
    assert t() == 2


def test_refresh_cache_setting(storage_root, monkeypatch):
    calls = []

    @task(result_storage_key="k")
    def t():
        calls.append(1)
        return len(calls)

    t()
    monkeypatch.setenv("STASHFLOW_TASKS_REFRESH_CACHE", "true")
    assert t() == 2
    assert t.with_options(refresh_cache=False)() == 2


def test_corrupt_record_is_a_miss_with_a_warning_then_overwritten(storage_root):
    @task(result_storage_key="k")
    def t():
        return "fresh"

    storage_root.mkdir(parents=True)
    (storage_root / "k").write_bytes(b"\x89SFR garbage that is not a record")
    with pytest.warns(CacheWarning, match="corrupted"):
        state = t(return_state=True)
    assert state.name == "Completed" and state.result() == "fresh"
    assert ResultStore(storage_root).read("k") == "fresh"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert t(return_state=True).name == "Cached"


def test_truncated_record_is_a_miss(storage_root):
    @task(result_storage_key="k")
    def t():
        return list(range(100))

    t()
    data = (storage_root / "k").read_bytes()
    (storage_root / "k").write_bytes(data[:-10])
    with pytest.warns(CacheWarning):
        assert t(return_state=True).name == "Completed"


class CountingStorage(LocalFileSystem):
    """Real local storage that counts how often records are opened and probed."""

    def __init__(self, **values):
        super().__init__(**values)
        self.counts = {"open_read": 0, "exists": 0, "read": 0}

    def open_read(self, key):
        self.counts["open_read"] += 1
        return super().open_read(key)

    def read(self, key):
        self.counts["read"] += 1
        return super().read(key)

    def exists(self, key):
        self.counts["exists"] += 1
        return super().exists(key)


def test_a_cache_hit_reads_the_record_once(tmp_path):
    storage = CountingStorage(basepath=str(tmp_path / "s"))

    @task(result_storage=storage, cache_policy=INPUTS)
    def t(x):
        return x * 2

    t(4)
    storage.counts.update(open_read=0, exists=0, read=0)
    assert t(4, return_state=True).name == "Cached"
    assert storage.counts == {"open_read": 1, "exists": 0, "read": 0}


def test_policies_combine_exclude_and_configure():
    combined = INPUTS + TASK_SOURCE
    assert combined == INPUTS + TASK_SOURCE
    assert (DEFAULT - "x").policies[0].exclude == ("x",)
    serial = INPUTS.configure(isolation_level="SERIALIZABLE", lock_manager="memory")
    assert serial.isolation_level == "SERIALIZABLE" and serial.lock_manager == "memory"
    assert INPUTS.isolation_level is None  # configure returned a copy
    assert (serial + TASK_SOURCE).isolation_level == "SERIALIZABLE"
    assert NO_CACHE + INPUTS == INPUTS
    with pytest.raises(ValueError):
        INPUTS.configure(isolation_level="SOMETIMES")
    with pytest.raises(ValueError):
        TASK_SOURCE - "x"


def test_builtin_policies_are_registered_by_name(storage_root):
    from stashflow.registry import get_registry

    policies = get_registry().cache_policies
    assert policies["inputs"] is INPUTS and policies["default"] is DEFAULT
    assert {"task_source", "flow_parameters", "run_id", "no_cache"} <= set(policies)

    calls = []

    @task(cache_policy="inputs")
    def t(x):
        calls.append(x)
        return x

    t(1)
    t(1)
    assert calls == [1]


def test_plugin_registered_policy_is_usable_by_name(storage_root):
    from stashflow import hookimpl, plugins

    class FirstArgument(CachePolicy):
        def compute_key(self, context, inputs, flow_parameters):
            return f"first-{next(iter(inputs.values()))}"

    class Plugin:
        @hookimpl
        def register_cache_policies(self, register):
            register("first-argument", FirstArgument())

    plugins.reset()
    plugins.pm.register(Plugin(), name="test-policies")
    try:
        @task(cache_policy="first-argument")
        def t(a, b):
            return a + b

        assert t(1, 2) == 3
        assert t(1, 100) == 3  # same first argument: cached
        assert (storage_root / "first-1").is_file()
    finally:
        plugins.reset()


def test_unknown_policy_name_is_an_error():
    @task(cache_policy="no-such-policy")
    def t():
        return 1

    with pytest.raises(LookupError, match="no-such-policy"):
        t()
