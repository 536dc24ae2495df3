"""Bytes on the wire, counted by a relay: a record's header costs one HEAD and one small
ranged GET, and a whole read brings the payload over once."""

from __future__ import annotations

import os

from stashflow import ResultStore
from stashflow_s3 import S3Bucket

MiB = 1024 * 1024


def test_reading_a_header_does_not_download_the_payload(bucket, proxy):
    payload = os.urandom(32 * MiB)
    ResultStore(f"s3://{bucket}/p").write("big", payload)
    relay = proxy()
    counted = ResultStore(S3Bucket(bucket_name=bucket, bucket_folder="p", endpoint_url=relay.url))
    counted.exists("big")  # warm the connection
    relay.reset_counts()

    meta = counted.read_metadata("big")
    assert meta.size > len(payload)
    header_bytes = relay.down
    assert header_bytes < 128 * 1024, header_bytes  # one HEAD + one 64 KiB ranged GET

    relay.reset_counts()
    assert counted.is_valid("big")
    assert counted.exists("big")
    assert relay.down < 128 * 1024

    relay.reset_counts()
    assert counted.read("big") == payload
    # Verified into a private copy, then deserialized from it: the payload crosses
    # the wire once.
    assert len(payload) <= relay.down < len(payload) + MiB
