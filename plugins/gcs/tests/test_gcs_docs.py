"""The examples in docs/backends/gcs.md run, against the emulator."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[3] / "docs" / "backends" / "gcs.md"
pytestmark = pytest.mark.skipif(not PAGE.exists(), reason="docs are not part of this checkout")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


def test_python_examples_run(gcs_server, gcs_client, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url)
    if not gcs_client.exists("my-bucket"):
        gcs_client.mkdir("my-bucket")
    namespace: dict = {}
    for code in blocks("python"):
        exec(compile(code, str(PAGE), "exec"), namespace)
    names = [n.removeprefix("my-bucket/") for n in gcs_client.find("my-bucket")]
    assert "team/results/daily/report" in names
    assert len(names) == 2  # the report and the task's cached result


def test_cli_block_example_hides_the_secret(stashflow_home):
    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "stashflow", *args], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    (create,) = [line for code in blocks("bash") for line in code.splitlines()
                 if line.startswith("stashflow block create gcs-bucket")]
    cli(*create.split()[1:], "--set", "token=very-secret-value")
    assert "gcs-bucket/my-dev-block" in cli("block", "ls")
    shown = cli("block", "inspect", "gcs-bucket/my-dev-block")
    assert "my-bucket" in shown
    assert "very-secret-value" not in shown
