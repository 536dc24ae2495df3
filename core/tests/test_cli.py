"""The command line as a whole: entry points, help, version, error style."""

import subprocess
import sys

from click.testing import CliRunner
from stashflow import settings
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


def test_dash_h_is_help_everywhere():
    for args in (["-h"], ["block", "-h"], ["results", "ls", "-h"]):
        result = CliRunner().invoke(main, args, prog_name="stashflow")
        assert result.exit_code == 0 and result.output.startswith("Usage: stashflow"), args


def test_config_set_checks_the_serializer_and_block_it_names_now(stashflow_home):
    result = CliRunner().invoke(main, ["config", "set", "STASHFLOW_RESULTS_DEFAULT_SERIALIZER=pickel"])
    assert result.exit_code == 2 and "unknown serializer 'pickel'" in result.output
    assert "Did you mean 'pickle'?" in result.output
    result = CliRunner().invoke(main, ["config", "set",
                                       "STASHFLOW_DEFAULT_RESULT_STORAGE_BLOCK=s3-bucket/nope"])
    assert result.exit_code == 2 and "no block is saved as 's3-bucket/nope'" in result.output
    assert not (stashflow_home / "profiles.toml").exists()  # nothing half-set
    ok = CliRunner().invoke(main, ["config", "set", "STASHFLOW_RESULTS_DEFAULT_SERIALIZER=json"])
    assert ok.exit_code == 0, ok.output


def test_block_ls_says_when_there_is_nothing_and_results_ls_refuses_a_missing_folder(tmp_path):
    empty = CliRunner().invoke(main, ["block", "ls"])
    assert empty.exit_code == 0 and "No saved blocks" in empty.output
    missing = CliRunner().invoke(main, ["results", "ls", "--storage", str(tmp_path / "nope")])
    assert missing.exit_code == 1
    assert missing.output.strip() == f"Error: no storage at {tmp_path / 'nope'}: the folder does " \
                                     "not exist (check --storage)"
    from stashflow import ResultStore

    ResultStore(tmp_path).write("one", 1)
    listed = CliRunner().invoke(main, ["results", "ls", "--storage", str(tmp_path)])
    assert listed.exit_code == 0 and "1 record\n" in listed.output


def test_profiles_are_listed_created_used_and_deleted(stashflow_home, monkeypatch):
    monkeypatch.delenv("STASHFLOW_PROFILE", raising=False)

    def cli(*args):
        return CliRunner().invoke(main, list(args))

    assert cli("config", "set", "STASHFLOW_RESULTS_DEFAULT_SERIALIZER=json").exit_code == 0
    assert cli("profile", "ls").output.splitlines() == ["* default"]
    assert cli("profile", "create", "ci", "--from", "default").exit_code == 0
    assert cli("profile", "use", "ci").exit_code == 0
    assert cli("profile", "ls").output.splitlines() == ["* ci", "  default"]
    assert settings.get("STASHFLOW_RESULTS_DEFAULT_SERIALIZER") == "json"  # copied
    refused = cli("profile", "delete", "ci")
    assert refused.exit_code == 1 and "is active" in refused.output
    assert cli("profile", "use", "default").exit_code == 0
    assert cli("profile", "delete", "ci").exit_code == 0
    missing = cli("profile", "use", "nope")
    assert missing.exit_code == 1 and "no profile 'nope'" in missing.output
    bad = cli("profile", "create", "../x")
    assert bad.exit_code == 1 and "invalid profile name" in bad.output
