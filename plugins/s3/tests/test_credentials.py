"""prefect-aws's AwsCredentials block, given to S3Bucket as `credentials=`, against moto."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from stashflow_s3 import AwsCredentials, S3Bucket
from stashflow_test_clouds import (
    S3_KEY_ID,
    S3_SECRET,
    check_cli,
    check_not_storage,
    check_round_trip,
    check_saved_by_reference,
    cli,
    saved_file,
)


@pytest.fixture
def keys(s3, monkeypatch) -> dict:
    """The fields that reach moto; the environment no longer does (no keys, no endpoint)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name)
    return {"aws_access_key_id": S3_KEY_ID, "aws_secret_access_key": S3_SECRET,
            "aws_client_parameters": {"endpoint_url": s3.server.url}}


def test_a_bucket_reached_through_the_credentials_block(s3, bucket, keys):
    storage = S3Bucket(bucket_name=bucket, bucket_folder="team", credentials=AwsCredentials(**keys))
    check_round_trip(s3, bucket, "team", storage)
    assert S3_SECRET not in repr(storage) and S3_SECRET not in str(vars(storage))
    check_not_storage(storage.credentials)


def test_a_profile_and_the_client_parameters_on_the_bucket(s3, bucket, keys, tmp_path, monkeypatch):
    (tmp_path / "credentials").write_text(
        f"[moto]\naws_access_key_id = {S3_KEY_ID}\naws_secret_access_key = {S3_SECRET}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    # An object with the parameters as attributes, as prefect-aws's AwsClientParameters is.
    parameters = SimpleNamespace(endpoint_url=s3.server.url, use_ssl=False, verify=False,
                                 config={"retries": {"max_attempts": 2}})
    storage = S3Bucket(bucket_name=bucket, credentials=AwsCredentials(profile_name="moto"),
                       aws_client_parameters=parameters)
    assert storage.aws_client_parameters["config"] == {"retries": {"max_attempts": 2}}
    check_round_trip(s3, bucket, "", storage)


def test_saved_and_loaded_by_slug(s3, bucket, keys):
    AwsCredentials(**keys).save("prod")
    S3Bucket(bucket_name=bucket, bucket_folder="team", credentials=AwsCredentials.load("prod")).save("team")
    check_saved_by_reference("s3-bucket/team", "credentials", "aws-credentials/prod", S3_SECRET)
    check_round_trip(s3, bucket, "team", "s3-bucket/team")
    assert S3Bucket.load("team").credentials == AwsCredentials(**keys)
    # Credentials never saved on their own go inline, still private and masked.
    S3Bucket(bucket_name=bucket, credentials=AwsCredentials(**keys)).save("inline")
    assert S3_SECRET in saved_file("s3-bucket/inline")
    assert S3_SECRET not in cli("block", "inspect", "s3-bucket/inline")
    check_round_trip(s3, bucket, "", "s3-bucket/inline")


def test_created_and_inspected_from_the_shell(s3, bucket, keys):
    endpoint = keys["aws_client_parameters"]["endpoint_url"]
    check_cli(("aws-credentials/prod", {"aws_access_key_id": S3_KEY_ID, "aws_secret_access_key": S3_SECRET,
                                        "aws_client_parameters": f'{{"endpoint_url": "{endpoint}"}}'}),
              ("s3-bucket/team", {"bucket_name": bucket}), "credentials", S3_SECRET)
    check_round_trip(s3, bucket, "", "s3-bucket/team")


@pytest.mark.parametrize("fields, error, message", [
    ({"credentials": S3Bucket(bucket_name="b")}, TypeError,
     r"S3Bucket\.credentials takes a block of type 'aws-credentials'"),
    ({"credentials": "s3-bucket/prod"}, TypeError, r"got the slug of a 's3-bucket' block"),
    ({"credentials": "aws-credentials/gone"}, LookupError, "refers to the block 'aws-credentials/gone'"),
    ({"credentials": {"aws_key": "x"}}, TypeError, r"AwsCredentials has no field 'aws_key'"),
    ({"credentials": AwsCredentials(aws_secret_access_key="secret-1"), "aws_secret_access_key": "secret-2"},
     ValueError, r"aws_secret_access_key and credentials.aws_secret_access_key differ"),
    ({"credentials": AwsCredentials(aws_client_parameters={"endpoint_url": "http://a"}),
      "endpoint_url": "http://b"}, ValueError, r"endpoint_url and credentials.aws_client_parameters"),
    ({"aws_client_parameters": {"endpoint": "http://a"}}, ValueError, r"no parameter 'endpoint'"),
])
def test_bad_credentials_name_the_field(fields, error, message):
    with pytest.raises(error, match=message) as info:
        S3Bucket(bucket_name="b", **fields)
    assert "secret-" not in str(info.value)
