"""The example plugin in docs/examples/ installs with pip and passes the kit, outside this repo."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "sqlite-plugin"


def test_the_sqlite_example_plugin_installs_and_passes_the_kit(tmp_path):
    source = tmp_path / "sqlite-plugin"  # a copy: the build leaves nothing in the repo
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=300)
    assert (target / "stashflow_sqlite" / "__init__.py").is_file()
    shutil.rmtree(source / "src")  # the tests must import the installed package
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                         cwd=source, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "failed" not in out.stdout

    plugins = subprocess.run([sys.executable, "-m", "stashflow", "plugins"], cwd=tmp_path,
                             env={**env, "STASHFLOW_HOME": str(tmp_path / "home")},
                             capture_output=True, text=True, timeout=120)
    assert "sqlite-example" in plugins.stdout
    assert "storage: sqlite-file" in plugins.stdout and "serializer: jsonl" in plugins.stdout
