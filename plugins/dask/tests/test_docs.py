"""The Python examples of docs/guides/dask.md run as written (the remote one on a local cluster and moto)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[3] / "docs" / "guides" / "dask.md"
REMOTE = "tcp://scheduler.example.com:8786"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


def run(code: str, name: str) -> dict:
    namespace = {"__name__": "__main__"}  # the examples' `if __name__ == "__main__":` parts run
    exec(compile(code, f"{PAGE.name}:{name}", "exec"), namespace)
    return namespace


@pytest.mark.skipif(not PAGE.exists(), reason="docs are not part of this checkout")
def test_guide_examples_run(tmp_path, monkeypatch, capsys, fresh_cluster, raw, moto_endpoint,
                            aws_keys):
    monkeypatch.chdir(tmp_path)
    laptop, dependencies, remote = blocks("python")

    run(laptop, "laptop")
    expected = sum(sum(i * i for i in range(n)) for n in (10_000, 20_000, 30_000))
    assert capsys.readouterr().out.strip() == str(expected)
    assert len(list((tmp_path / "dask-results").iterdir())) == 4  # 3 scores and the flow's

    run(dependencies, "dependencies")  # asserts its own result

    aws = {"AWS_ACCESS_KEY_ID": aws_keys[0], "AWS_SECRET_ACCESS_KEY": aws_keys[1],
           "AWS_ENDPOINT_URL_S3": moto_endpoint, "AWS_EC2_METADATA_DISABLED": "true"}
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    raw.create_bucket(Bucket="my-bucket")
    cluster = fresh_cluster(extra_env=aws)  # workers with their own credentials, as in the guide
    assert REMOTE in remote
    run(remote.replace(REMOTE, cluster.scheduler_address), "remote")
    assert capsys.readouterr().out.strip() == str([0.9, 0.91, 0.92] * 2)
    records = [k for page in raw.get_paginator("list_objects_v2").paginate(Bucket="my-bucket")
               for k in (item["Key"] for item in page.get("Contents", ()))
               if not k.startswith("dask/.stashflow/")]
    assert len(records) == 4  # each fold once, and the flow's


def test_guide_lists_every_constructor_argument():
    import inspect

    from stashflow_dask import DaskTaskRunner

    text = PAGE.read_text()
    for name in inspect.signature(DaskTaskRunner).parameters:
        assert f"`{name}`" in text or f"{name}=" in text
