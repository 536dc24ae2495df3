"""The FTP example plugin installs with pip and passes its own tests (the kit on a real server)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "ftp-plugin"


def test_the_ftp_example_plugin_installs_and_passes_its_tests(tmp_path):
    source = tmp_path / "ftp-plugin"  # a copy: the build leaves nothing in the repo
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=300)
    assert (target / "stashflow_ftp" / "__init__.py").is_file()
    shutil.rmtree(source / "src")  # the tests must import the installed package
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                         cwd=source, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    passed = re.search(r"(\d+) passed", out.stdout)
    assert passed and int(passed.group(1)) >= 30, out.stdout[-1000:]  # the kit, the flow, the URL
    assert "failed" not in out.stdout and "skipped" not in out.stdout

    plugins = subprocess.run([sys.executable, "-m", "stashflow", "plugins"], cwd=tmp_path,
                             env={**env, "STASHFLOW_HOME": str(tmp_path / "home")},
                             capture_output=True, text=True, timeout=120)
    assert "ftp-example" in plugins.stdout
    assert "storage: ftp" in plugins.stdout
