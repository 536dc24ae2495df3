"""TASK_SOURCE's fingerprint follows the code that runs, through real module files."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
from stashflow import cache_policies, fingerprint, task
from stashflow.cache_policies import INPUTS, TASK_SOURCE
from stashflow.fingerprint import code_fingerprint
from stashflow.hashing import hash_inputs


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """Write modules into a directory on sys.path; import and reload them from their files."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # a reload reads the edited file
    written: list[str] = []

    class Modules:
        path = tmp_path

        def write(self, name: str, source: str) -> None:
            (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
            written.append(name)

        def load(self, *names: str):
            """Import (or reload, in the order given) the named modules; returns the last."""
            importlib.invalidate_caches()
            module = None
            for name in names:
                module = importlib.reload(sys.modules[name]) if name in sys.modules \
                    else importlib.import_module(name)
            return module

    yield Modules()
    for name in written:
        sys.modules.pop(name, None)


def make_chain(modules, scale: str = "x * 2", extra: str = "") -> None:
    modules.write("fp_deep", f"""
        def scale(x):
            return {scale}
        {extra}
    """)
    modules.write("fp_mid", """
        import fp_deep

        def prepare(x):
            return fp_deep.scale(x) + 1
    """)
    modules.write("fp_tasks", """
        from fp_mid import prepare

        def run(x):
            return prepare(x) * 10
    """)


def test_editing_a_helper_two_calls_deep_changes_the_key(modules):
    make_chain(modules)
    run = modules.load("fp_deep", "fp_mid", "fp_tasks").run
    before = code_fingerprint(run)
    make_chain(modules, scale="x * 3")
    modules.load("fp_deep")  # fp_mid reads fp_deep.scale at call time: that is enough
    assert run(1) == 40
    assert code_fingerprint(run) != before


def test_reloading_every_module_after_an_edit_changes_the_key(modules):
    modules.write("fp_leaf", "def f(x):\n    return x + 1\n")
    modules.write("fp_user", "from fp_leaf import f\n\ndef g(x):\n    return f(x)\n")
    before = code_fingerprint(modules.load("fp_leaf", "fp_user").g)
    modules.write("fp_leaf", "def f(x):\n    return x + 2\n")
    assert code_fingerprint(modules.load("fp_leaf", "fp_user").g) != before


def test_unrelated_edits_comments_and_blank_lines_keep_the_key(modules):
    make_chain(modules)
    run = modules.load("fp_deep", "fp_mid", "fp_tasks").run
    before = code_fingerprint(run)
    make_chain(modules, extra="""
        # a new comment


        def unrelated(y):
            return y - 100
    """)
    modules.load("fp_deep")
    assert code_fingerprint(run) == before
    modules.write("fp_tasks", """
        # the task, now with comments and blank lines
        from fp_mid import prepare


        def run(x):

            return prepare(x) * 10   # the same code
    """)
    assert code_fingerprint(modules.load("fp_tasks").run) == before


def test_closures_with_other_values_get_other_keys(modules):
    modules.write("fp_closures", """
        def make(k):
            def add(x):
                return x + k
            return add
    """)
    make = modules.load("fp_closures").make
    assert code_fingerprint(make(2)) != code_fingerprint(make(3))
    assert code_fingerprint(make(2)) == code_fingerprint(make(2))
    assert code_fingerprint(make([1])) != code_fingerprint(make([2]))
    assert code_fingerprint(make(make(1))) != code_fingerprint(make(make(2)))


def test_a_closure_task_never_returns_another_closures_result(stashflow_home):
    def make(k):
        def add(x):
            return x + k
        return add

    policy = INPUTS + TASK_SOURCE
    assert task(make(2), cache_policy=policy)(1) == 3
    assert task(make(3), cache_policy=policy)(1) == 4
    assert task(make(2), cache_policy=policy)(1, return_state=True).name == "Cached"


def test_a_task_appending_to_its_closure_list_keeps_its_key():
    calls = []

    def counted(x):
        calls.append(x)
        return x

    before = code_fingerprint(counted)
    counted(1)
    assert code_fingerprint(counted) == before


def test_module_constants_count_and_mutable_globals_do_not(modules):
    modules.write("fp_consts", """
        import enum

        class Mode(enum.Enum):
            FAST = 1
            SLOW = 2

        SCALE = 2
        MODE = Mode.FAST
        LIMITS = (1, frozenset({"a"}))
        SEEN = []

        def f(x):
            SEEN.append(x)
            return x * SCALE if MODE is Mode.FAST and x in LIMITS else 0
    """)
    mod = modules.load("fp_consts")
    before = code_fingerprint(mod.f)
    for name, value in (("SCALE", 3), ("MODE", mod.Mode.SLOW), ("LIMITS", (1, frozenset({"b"})))):
        original = getattr(mod, name)
        setattr(mod, name, value)
        assert code_fingerprint(mod.f) != before, name
        setattr(mod, name, original)
        assert code_fingerprint(mod.f) == before, name
    mod.f(1)  # appends to SEEN: lists and dicts at module level are not covered
    assert code_fingerprint(mod.f) == before


def test_a_name_defined_later_changes_the_key(modules):
    modules.write("fp_later", "def f(x):\n    return helper(x)\n")
    mod = modules.load("fp_later")
    before = code_fingerprint(mod.f)
    exec("def helper(x):\n    return x\n", vars(mod))
    first = code_fingerprint(mod.f)
    exec("def helper(x):\n    return -x\n", vars(mod))
    assert len({before, first, code_fingerprint(mod.f)}) == 3


def test_lambdas_hash_their_code():
    assert code_fingerprint(lambda x: x + 1) == code_fingerprint(lambda x: x + 1)
    assert code_fingerprint(lambda x: x + 1) != code_fingerprint(lambda x: x + 2)
    assert code_fingerprint(lambda x: x + 1) != code_fingerprint(lambda x: x + 1.0)
    assert code_fingerprint(lambda x: x * 0.0) != code_fingerprint(lambda x: x * -0.0)
    assert code_fingerprint(lambda x, *a: x) != code_fingerprint(lambda x, a: x)


def test_mutual_recursion_terminates_and_follows_both(modules):
    modules.write("fp_cycle", """
        def ping(n):
            return pong(n - 1) if n else "ping"

        def pong(n):
            return ping(n - 1) if n else "pong"
    """)
    mod = modules.load("fp_cycle")
    before = code_fingerprint(mod.ping)
    exec("def pong(n):\n    return ping(n - 2) if n > 0 else 'pong'\n", vars(mod))
    assert code_fingerprint(mod.ping) != before


def test_decorated_functions_classes_and_tasks_are_followed(modules):
    modules.write("fp_follow", """
        import functools
        from stashflow import task

        def logged(fn):
            @functools.wraps(fn)
            def wrapper(*args):
                return fn(*args)
            return wrapper

        @logged
        def helper(x):
            return x + 1

        @functools.lru_cache
        def cached(x):
            return x + 1

        class Scaler:
            factor = 2

            def apply(self, x):
                return x * self.factor

        @task
        def inner(x):
            return x + 1

        def run(x):
            return helper(x) + cached(x) + Scaler().apply(x) + inner.fn(x)
    """)
    mod = modules.load("fp_follow")
    before = code_fingerprint(mod.run)
    edits = {
        "helper": "@logged\ndef helper(x):\n    return x + 2\n",
        "cached": "@functools.lru_cache\ndef cached(x):\n    return x + 2\n",
        "Scaler": "class Scaler:\n    factor = 3\n    def apply(self, x):\n        return x * self.factor\n",
        "inner": "@task\ndef inner(x):\n    return x + 2\n",
    }
    for name, source in edits.items():
        original = getattr(mod, name)
        exec(source, vars(mod))
        assert code_fingerprint(mod.run) != before, name
        setattr(mod, name, original)
        assert code_fingerprint(mod.run) == before, name


def test_installed_and_standard_library_code_counts_by_name_and_version(modules, monkeypatch):
    np = pytest.importorskip("numpy")
    modules.write("fp_libs", """
        import json
        import numpy as np

        def run(x):
            return json.dumps(x) + str(np.mean(x))
    """)
    mod = modules.load("fp_libs")
    before = code_fingerprint(mod.run)
    monkeypatch.setattr(json, "dumps", lambda x: "patched")  # not read: json counts by Python's version
    monkeypatch.setattr(np, "mean", lambda x: 0)  # not read: numpy counts by its version
    assert code_fingerprint(mod.run) == before
    monkeypatch.setattr(np, "__version__", "0.0.1")
    fingerprint._version.cache_clear()
    try:
        assert code_fingerprint(modules.load("fp_libs").run) != before
    finally:
        monkeypatch.undo()
        fingerprint._version.cache_clear()


def test_function_arguments_hash_by_their_code(modules):
    modules.write("fp_args", "def make(k):\n    return lambda x: x + k\n")
    make = modules.load("fp_args").make
    assert hash_inputs({"fn": make(2)}) != hash_inputs({"fn": make(3)})
    assert hash_inputs({"fn": make(2)}) == hash_inputs({"fn": make(2)})


SOURCE = "def f(x):\n    return [x + 1 for _ in range(2)]\n"


def test_same_code_same_key_in_main_exec_and_other_processes(modules):
    modules.write("fp_same", SOURCE)
    in_module = code_fingerprint(modules.load("fp_same").f)
    namespace: dict = {}
    exec(SOURCE, namespace)
    assert code_fingerprint(namespace["f"]) == in_module

    printing = "from stashflow.fingerprint import code_fingerprint\nprint(code_fingerprint(f))\n"
    script = modules.path / "fp_main_script.py"
    script.write_text(SOURCE + printing)
    keys = set()
    for command in ([sys.executable, "-c", SOURCE + printing], [sys.executable, str(script)],
                    [sys.executable, "-c", f"import fp_same as m\nf = m.f\n{printing}"]):
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=modules.path,
                              env={**os.environ, "PYTHONHASHSEED": str(len(keys) + 7),
                                   "PYTHONPATH": str(modules.path)})
        assert proc.returncode == 0, proc.stderr
        keys.add(proc.stdout.strip())
    assert keys == {in_module}


def test_chain_key_is_stable_across_processes(modules):
    make_chain(modules)
    here = code_fingerprint(modules.load("fp_deep", "fp_mid", "fp_tasks").run)
    proc = subprocess.run(
        [sys.executable, "-c", "from fp_tasks import run\nfrom stashflow.fingerprint import "
         "code_fingerprint\nprint(code_fingerprint(run))"],
        capture_output=True, text=True, timeout=60, cwd=modules.path,
        env={**os.environ, "PYTHONHASHSEED": "99", "PYTHONPATH": str(modules.path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == here


def test_source_hash_is_the_fingerprint_and_task_source_uses_it():
    assert cache_policies.source_hash is code_fingerprint

    def body(x):
        return x

    class Context:
        task = type("T", (), {"fn": staticmethod(body)})

    assert TASK_SOURCE.compute_key(Context, {}, None) == code_fingerprint(body)
    assert len(code_fingerprint(body)) == 32
