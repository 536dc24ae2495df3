"""The distributions build as wheels and work when installed from them (not editable)."""

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
DISTRIBUTIONS = {"stashflow": REPO / "core", "stashflow_local": REPO / "plugins" / "local",
                 "stashflow_compressed_json": REPO / "plugins" / "compressed-json"}


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
    assert set(wheels) == set(DISTRIBUTIONS)
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
