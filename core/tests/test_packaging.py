"""The distributions build as wheels and work when installed from them (not editable);
no wheel carries test infrastructure (servers, their credentials, pytest) into the product."""

import ast
import importlib.util
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# Build with the hatchling installed here when there is one (offline); else pip fetches it.
_NO_ISOLATION = ["--no-build-isolation"] if importlib.util.find_spec("hatchling") else []

REPO = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = {"stashflow": REPO / "core",
                 **{"stashflow_" + d.name.replace("-", "_"): d
                    for d in sorted((REPO / "plugins").iterdir()) if (d / "pyproject.toml").is_file()}}
# The pytest plugin (stashflow.testing, the plugin kit) is the one place pytest belongs.
TEST_ONLY_IMPORTS = {"pytest", "_pytest", "moto", "hypothesis", "stashflow_test_servers",
                     "stashflow_test_clouds", "stashflow_test_io", "conftest"}
# Strings only a test harness holds: Azurite's well-known account and key, the npm tree.
TEST_ONLY_STRINGS = ("devstoreaccount1", "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2",
                     "node_modules", "azurite", "fake-gcs-server", "moto.server")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *_NO_ISOLATION,
         "--disable-pip-version-check", "-w", str(out), *map(str, DISTRIBUTIONS.values())],
        check=True, capture_output=True, timeout=300,
    )
    return {w.name.split("-")[0]: w for w in out.glob("*.whl")}


def test_wheels_hold_the_packages_and_no_tests(wheels):
    assert set(wheels) == set(DISTRIBUTIONS), "each plugin folder builds one wheel"
    names = {dist: zipfile.ZipFile(w).namelist() for dist, w in wheels.items()}
    for must in ("stashflow/records.py", "stashflow/serializers/_builtin.py",
                 "stashflow/storage/memory.py", "stashflow/hookspecs.py", "stashflow/cli.py"):
        assert must in names["stashflow"]
    assert "stashflow_local/__init__.py" in names["stashflow_local"]
    assert "stashflow_compressed/__init__.py" in names["stashflow_compressed_json"]
    for listing in names.values():
        assert not [n for n in listing if "/tests/" in n or n.startswith("tests/")]
    entry_points = {dist: zipfile.ZipFile(w).read(next(n for n in names[dist]
                                                      if n.endswith("entry_points.txt"))).decode()
                    for dist, w in wheels.items()}
    assert "stashflow = stashflow.cli:main" in entry_points["stashflow"]
    assert "local = stashflow_local" in entry_points["stashflow_local"]
    assert "compressed = stashflow_compressed" in entry_points["stashflow_compressed_json"]


def infrastructure_in(wheels: dict[str, Path]) -> list[str]:
    """What in these wheels is test infrastructure, one line each."""
    found = []
    for wheel in wheels.values():
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if not name.endswith(".py"):
                    continue
                text = zf.read(name).decode("utf-8")
                found += [f"{wheel.name}: {name} holds {s!r}" for s in TEST_ONLY_STRINGS
                          if s in text]
                if name.startswith("stashflow/testing/"):
                    continue
                for node in ast.walk(ast.parse(text)):
                    modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                               else [node.module or ""] if isinstance(node, ast.ImportFrom)
                               and node.level == 0 else [])
                    found += [f"{wheel.name}: {name} imports {m}" for m in modules
                              if m.split(".")[0] in TEST_ONLY_IMPORTS]
    return found


def test_every_wheel_is_typed(wheels):
    for dist, wheel in wheels.items():
        names = zipfile.ZipFile(wheel).namelist()
        assert any(n.endswith("/py.typed") and n.count("/") == 1 for n in names), dist


def test_no_wheel_carries_test_infrastructure(wheels):
    assert len(wheels) == len(DISTRIBUTIONS) >= 8
    assert infrastructure_in(wheels) == []


def test_the_check_for_test_infrastructure_sees_a_planted_harness(tmp_path):
    planted = tmp_path / "bad.whl"
    with zipfile.ZipFile(planted, "w") as zf:
        zf.writestr("stashflow/_servers.py", "import pytest\nKEY = 'devstoreaccount1'\n")
    assert infrastructure_in({"bad": planted}) == [
        "bad.whl: stashflow/_servers.py holds 'devstoreaccount1'",
        "bad.whl: stashflow/_servers.py imports pytest"]


def test_installed_wheels_persist_locally_and_list_their_plugins(wheels, tmp_path):
    # pip --target, not a nested venv: inside the venv CI uses, a nested venv would see
    # the base interpreter's packages instead of this one's dependencies.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--disable-pip-version-check", "--target", str(target),
                    *map(str, wheels.values())],
                   check=True, capture_output=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STASHFLOW_", "PYTHONPATH"))}
    env.update(STASHFLOW_HOME=str(tmp_path / "home"), PYTHONPATH=str(target))
    script = textwrap.dedent("""
        import stashflow, stashflow_local
        from stashflow import ResultStore
        store = ResultStore()
        store.write("k", {"v": 1})
        print(stashflow.__file__)
        print(stashflow_local.__file__)
        print(store.read("k"), ResultStore(serializer="compressed/json").write("j", [1]).serializer)
    """)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    core_file, local_file, last = result.stdout.splitlines()
    assert core_file.startswith(str(target)) and local_file.startswith(str(target))
    assert last == "{'v': 1} compressed/json"
    assert (tmp_path / "home" / "storage" / "k").is_file()
    listed = subprocess.run([sys.executable, "-m", "stashflow", "plugins"], env=env,
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "local  (stashflow-local 0.1.0, entry point local = stashflow_local)" in listed.stdout
    assert "compressed  (stashflow-compressed-json 0.1.0" in listed.stdout
    assert (target / "bin" / "stashflow").is_file()  # the console script is in the wheel
