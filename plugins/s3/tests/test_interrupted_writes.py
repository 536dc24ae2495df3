"""The connection cut in the middle of a multipart upload: nothing is published."""

from __future__ import annotations

import os

import pytest
from stashflow import ResultStore
from stashflow.exceptions import ResultNotFound, StorageError
from stashflow_s3 import S3Bucket

MiB = 1024 * 1024


def test_connection_cut_mid_upload_leaves_no_object(backend, bucket, proxy, s3, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # botocore's 5 attempts with backoff take ~7 s
    payload = os.urandom(40 * MiB)
    relay = proxy(cut_after_up=20 * MiB)  # dies mid-upload, parts already sent
    cut = S3Bucket(**{**backend.field_values(reveal_secrets=True), "endpoint_url": relay.url})
    store = ResultStore(cut)
    with pytest.raises(StorageError) as info:
        store.write("runs/big", payload)
    assert str(info.value).startswith(f"s3-bucket: could not write s3://{bucket}/team/results/runs/big")
    assert relay.dead.is_set()

    # The server itself is fine: nothing is visible there, and the cache is not poisoned.
    assert s3.names(bucket) == []
    healthy = ResultStore(backend)
    assert not healthy.exists("runs/big")
    with pytest.raises(ResultNotFound):
        healthy.read("runs/big")
    healthy.write("runs/big", b"retried")
    assert healthy.read("runs/big") == b"retried"
