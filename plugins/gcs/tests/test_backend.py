"""What is GcsBucket's own: its configuration and URL forms, resumable uploads in parts.
tests/cloud runs the rest."""

from __future__ import annotations

import io
import os

import pytest
from stashflow_gcs import PART_BYTES, GcsBucket


def test_url_form_and_url_for():
    b = GcsBucket.from_url("gs://my-bucket/some/folder")
    assert (b.bucket, b.bucket_folder) == ("my-bucket", "some/folder")
    assert b.url_for("k") == "gs://my-bucket/some/folder/k"
    assert GcsBucket.from_url("gcs://my-bucket").bucket_folder == ""
    assert GcsBucket.from_url("gcs://my-bucket").url_for("a/b") == "gs://my-bucket/a/b"


def test_bad_configuration_is_refused():
    with pytest.raises(TypeError, match="bucket"):
        GcsBucket()
    with pytest.raises(ValueError, match="bucket_folder"):
        GcsBucket(bucket="b", bucket_folder="a/../b")


def test_streamed_write_uploads_in_parts_and_reads_back(backend, gcs, bucket):
    data = os.urandom(2 * PART_BYTES + 12345)
    backend.write("big/stream", io.BytesIO(data))
    assert backend.read("big/stream") == data
    assert gcs.raw.info(f"{bucket}/results/v1/big/stream")["size"] == len(data)
