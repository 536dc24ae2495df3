"""The example plugins in docs/examples install with pip, pass their own tests (the
plugin kit, on a real FTP server for the FTP one) and are listed by `stashflow plugins`."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"

# folder, package, at least this many tests, what `stashflow plugins` lists
PLUGINS = [
    ("sqlite-plugin", "stashflow_sqlite", 20,
     ["sqlite-example", "storage: sqlite-file", "serializer: jsonl"]),
    ("ftp-plugin", "stashflow_ftp", 30, ["ftp-example", "storage: ftp"]),
]


@pytest.mark.parametrize(("folder", "package", "at_least", "listed"), PLUGINS,
                         ids=[p[0] for p in PLUGINS])
def test_the_example_plugin_installs_and_passes_its_tests(tmp_path, folder, package, at_least,
                                                         listed):
    source = tmp_path / folder  # a copy: the build leaves nothing in the repo
    shutil.copytree(EXAMPLES / folder, source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=300)
    assert (target / package / "__init__.py").is_file()
    shutil.rmtree(source / "src")  # the tests must import the installed package
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                         cwd=source, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    passed = re.search(r"(\d+) passed", out.stdout)
    assert passed and int(passed.group(1)) >= at_least, out.stdout[-1000:]
    assert "failed" not in out.stdout and "skipped" not in out.stdout

    plugins = subprocess.run([sys.executable, "-m", "stashflow", "plugins"], cwd=tmp_path,
                             env={**env, "STASHFLOW_HOME": str(tmp_path / "home")},
                             capture_output=True, text=True, timeout=120)
    for line in listed:
        assert line in plugins.stdout, plugins.stdout
