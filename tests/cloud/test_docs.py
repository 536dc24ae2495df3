"""Each backend's page in docs/backends (s3.md, gcs.md, azure.md) runs as written,
against that cloud's server: its Python examples in order (the server reached through
the environment, as a user's would be), and its `stashflow block create` line, whose secret is never shown."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "backends"
BUCKETS = {"s3": "my-bucket", "gcs": "my-bucket", "azure": "my-container"}


def code_blocks(cloud, language: str) -> list[str]:
    page = DOCS / f"{cloud.name}.md"
    if not page.exists():
        pytest.skip("docs are not part of this checkout")
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(), flags=re.DOTALL)


def test_the_python_examples_run_and_write_where_the_page_says(cloud, monkeypatch):
    cloud.set_env(monkeypatch)
    bucket = BUCKETS[cloud.name]
    if bucket in cloud.names_of_buckets():
        for name in cloud.names(bucket):
            cloud.delete_raw(bucket, name)
    else:
        cloud.bucket(bucket)
    namespace: dict = {}
    for code in code_blocks(cloud, "python"):
        exec(compile(code, str(DOCS / f"{cloud.name}.md"), "exec"), namespace)
    names = cloud.names(bucket)
    assert "team/results/daily/report" in names
    assert len(names) == 2, names  # the report and the task's cached result


def test_the_block_create_line_works_and_hides_the_secret(cloud):
    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "stashflow", *args], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    (create,) = [line for code in code_blocks(cloud, "bash") for line in code.splitlines()
                 if line.startswith(f"stashflow block create {cloud.type_slug}")]
    cli(*create.split()[1:], "--set", f"{cloud.secret_field}=very-secret-value")
    assert f"{cloud.type_slug}/my-dev-block" in cli("block", "ls")
    shown = cli("block", "inspect", f"{cloud.type_slug}/my-dev-block")
    assert BUCKETS[cloud.name] in shown
    assert "very-secret-value" not in shown
