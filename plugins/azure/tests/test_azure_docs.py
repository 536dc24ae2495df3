"""The examples in docs/backends/azure.md run, against Azurite."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[3] / "docs" / "backends" / "azure.md"
pytestmark = pytest.mark.skipif(not PAGE.exists(), reason="docs are not part of this checkout")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


def test_python_examples_run(azurite, monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    client = azurite.client()
    if not client.get_container_client("my-container").exists():
        client.create_container("my-container")
    namespace: dict = {}
    for code in blocks("python"):
        exec(compile(code, str(PAGE), "exec"), namespace)
    names = azurite.names("my-container")
    assert "team/results/daily/report" in names
    assert len(names) == 2  # the report and the task's cached result


def test_cli_block_example_hides_the_secret(stashflow_home):
    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "stashflow", *args], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    (create,) = [line for code in blocks("bash") for line in code.splitlines()
                 if line.startswith("stashflow block create azure-blob-storage")]
    cli(*create.split()[1:], "--set", "account_key=very-secret-value")
    assert "azure-blob-storage/my-dev-block" in cli("block", "ls")
    shown = cli("block", "inspect", "azure-blob-storage/my-dev-block")
    assert "my-container" in shown
    assert "very-secret-value" not in shown
