"""The command line as a whole: entry points, help, version, error style."""

import subprocess
import sys

from click.testing import CliRunner
from stashflow.cli import main


def test_version_and_help():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and "0.1.0" in result.output
    result = CliRunner().invoke(main, ["--help"])
    for command in ("config", "plugins", "block"):
        assert command in result.output


def test_python_dash_m_stashflow_runs_the_cli(stashflow_home):
    result = subprocess.run([sys.executable, "-m", "stashflow", "config", "view"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"STASHFLOW_HOME={stashflow_home}" in result.stdout.splitlines()


def test_typed_errors_are_one_line_without_a_traceback():
    result = CliRunner().invoke(main, ["block", "inspect", "local-file-system/absent"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: no block saved as 'local-file-system/absent'")
    assert "Traceback" not in result.output
