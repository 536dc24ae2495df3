"""prefect-gcp's GcpCredentials block, given to GcsBucket as `gcp_credentials=`, against
fake-gcs-server. The emulator takes no credentials, so a bucket holding a service account
key is checked up to the client it builds (requests would first ask Google for a token)."""

from __future__ import annotations

import json

import pytest
from stashflow.exceptions import StorageError
from stashflow_gcs import GcpCredentials, GcsBucket
from stashflow_test_clouds import check_cli, check_not_storage, check_round_trip, check_saved_by_reference


@pytest.fixture(autouse=True)
def emulator(gcs, monkeypatch):
    gcs.set_env(monkeypatch)  # STORAGE_EMULATOR_HOST: a bucket with no key goes anonymously


@pytest.fixture(scope="module")
def key(gcs) -> dict:
    return gcs.service_account_key()


def email_of(bucket: GcsBucket) -> str:
    """The service account the bucket's (real gcsfs) client would sign requests as."""
    return bucket.filesystem().credentials.credentials.service_account_email


def test_a_bucket_reached_through_the_credentials_block(gcs, bucket):
    storage = GcsBucket(bucket=bucket, bucket_folder="team",
                        gcp_credentials=GcpCredentials(project="stashflow-tests"))
    check_round_trip(gcs, bucket, "team", storage)
    assert storage.filesystem().project == "stashflow-tests"
    check_not_storage(storage.gcp_credentials)


def test_a_service_account_key_as_a_dict_text_or_file(bucket, key, tmp_path):
    (tmp_path / "key.json").write_text(json.dumps(key))
    for credentials in (GcpCredentials(service_account_info=key),
                        GcpCredentials(service_account_info=json.dumps(key)),
                        GcpCredentials(service_account_file=tmp_path / "key.json")):
        storage = GcsBucket(bucket=bucket, gcp_credentials=credentials)
        assert email_of(storage) == key["client_email"]
        assert key["private_key_id"] not in repr(storage)


def test_saved_and_loaded_by_slug(gcs, bucket, key):
    GcpCredentials(service_account_info=key).save("prod")
    GcsBucket(bucket=bucket, gcp_credentials=GcpCredentials.load("prod")).save("team")
    check_saved_by_reference("gcs-bucket/team", "gcp_credentials", "gcp-credentials/prod",
                             key["private_key_id"])
    assert email_of(GcsBucket.load("team")) == key["client_email"]
    GcpCredentials(project="stashflow-tests").save("anonymous")
    GcsBucket(bucket=bucket, bucket_folder="team", gcp_credentials="gcp-credentials/anonymous").save("open")
    check_round_trip(gcs, bucket, "team", "gcs-bucket/open")


def test_created_and_inspected_from_the_shell(bucket, key):
    fields = {"service_account_info": json.dumps(key), "project": "stashflow-tests"}
    check_cli(("gcp-credentials/prod", fields), ("gcs-bucket/team", {"bucket": bucket}), "gcp_credentials",
              key["private_key_id"])
    assert email_of(GcsBucket.load("team")) == key["client_email"]


@pytest.mark.parametrize("fields, error, message", [
    ({"gcp_credentials": GcsBucket(bucket="b")}, TypeError, "takes a block of type 'gcp-credentials'"),
    ({"gcp_credentials": "gcs-bucket/prod"}, TypeError, "got the slug of a 'gcs-bucket' block"),
    ({"gcp_credentials": {"service_account_file": "k.json", "service_account_info": "{}"}},
     ValueError, "service_account_file or service_account_info, not both"),
    ({"gcp_credentials": GcpCredentials(service_account_info='{"secret-1": 1}'), "token": "secret-2"},
     ValueError, "token and gcp_credentials.service_account_info differ"),
    ({"gcp_credentials": GcpCredentials(project="a"), "project": "b"}, ValueError,
     "project and gcp_credentials.project differ"),
])
def test_bad_credentials_name_the_field(fields, error, message):
    with pytest.raises(error, match=message) as info:
        GcsBucket(bucket="b", **fields)
    assert "secret-" not in str(info.value)


@pytest.mark.parametrize("credentials, message", [
    ({"service_account_file": "/no/such/key.json"}, "service_account_file '/no/such/key.json' is not a file"),
    ({"service_account_info": "secret-1"}, "service_account_info is not a service account key"),
])
def test_a_key_that_cannot_be_one_fails_on_first_use(credentials, message):
    storage = GcsBucket(bucket="b", gcp_credentials=credentials)
    with pytest.raises(StorageError, match=message) as info:
        storage.filesystem()
    assert "secret-" not in str(info.value)
