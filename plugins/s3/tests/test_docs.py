"""The examples in docs/backends/s3.md run, against the moto server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[3] / "docs" / "backends" / "s3.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


@pytest.mark.skipif(not PAGE.exists(), reason="docs are not part of this checkout")
def test_python_examples_run(raw, keys_in):
    raw.create_bucket(Bucket="my-bucket")
    namespace: dict = {}
    for code in _blocks("python"):
        exec(compile(code, str(PAGE), "exec"), namespace)
    keys = keys_in("my-bucket")
    assert "team/results/daily/report" in keys
    assert len(keys) == 2  # the report and the task's cached result


@pytest.mark.skipif(not PAGE.exists(), reason="docs are not part of this checkout")
def test_cli_block_example_hides_the_secret(stashflow_home):
    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "stashflow", *args], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    (create,) = [line for code in _blocks("bash") for line in code.splitlines()
                 if line.startswith("stashflow block create s3-bucket")]
    cli(*create.split()[1:], "--set", "aws_secret_access_key=very-secret-value")
    assert "s3-bucket/my-dev-block" in cli("block", "ls")
    shown = cli("block", "inspect", "s3-bucket/my-dev-block")
    assert "my-bucket" in shown
    assert "very-secret-value" not in shown
