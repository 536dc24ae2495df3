"""Helpers for the engine tests: the default storage directory and file listings."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def storage_root(stashflow_home) -> Path:
    """Where the default local storage writes (STASHFLOW_LOCAL_STORAGE_PATH's default)."""
    return stashflow_home / "storage"


def files_under(root: Path) -> list[str]:
    """Relative paths of the record files under `root` (temp files excluded)."""
    if not root.exists():
        return []
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".stashflow")
    )


@pytest.fixture
def files():
    return files_under


@pytest.fixture
def run_script(tmp_path):
    """Run Python source in a fresh interpreter with this test's environment."""

    def run(source: str, env: dict | None = None, name: str = "script.py") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source))
        proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, cwd=tmp_path, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    return run
