"""prefect-azure's AzureBlobStorageCredentials block, given to AzureBlobStorageContainer
as `credentials=`, against Azurite."""

from __future__ import annotations

import pytest
from stashflow_azure import AzureBlobStorageContainer, AzureBlobStorageCredentials
from stashflow_test_clouds import check_cli, check_not_storage, check_round_trip, check_saved_by_reference
from stashflow_test_servers import ACCOUNT_KEY


@pytest.fixture(autouse=True)
def no_environment(monkeypatch):
    """Only the blocks say where Azurite is."""
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)


def test_a_container_reached_through_the_credentials_block(azure, container):
    credentials = AzureBlobStorageCredentials(connection_string=azure.server.connection_string)
    storage = AzureBlobStorageContainer(container_name=container, blob_folder="team", credentials=credentials)
    check_round_trip(azure, container, "team", storage)
    assert ACCOUNT_KEY not in repr(storage) and ACCOUNT_KEY not in str(vars(storage))
    check_not_storage(credentials)


def test_an_account_url_with_the_account_key(azure, container):
    credentials = AzureBlobStorageCredentials(account_url=azure.server.url)  # path-style, over http
    storage = AzureBlobStorageContainer(container_name=container, credentials=credentials,
                                        account_key=ACCOUNT_KEY, account_name="devstoreaccount1")
    check_round_trip(azure, container, "", storage)


def test_an_account_url_alone_means_the_default_credential_chain():
    credentials = AzureBlobStorageCredentials(account_url="https://myaccount.blob.core.windows.net")
    client = AzureBlobStorageContainer(container_name="c", credentials=credentials).filesystem()
    assert client.account_url == "https://myaccount.blob.core.windows.net"
    assert type(client.credential).__name__ == "DefaultAzureCredential"


def test_saved_and_loaded_by_slug(azure, container):
    AzureBlobStorageCredentials(connection_string=azure.server.connection_string).save("prod")
    credentials = AzureBlobStorageCredentials.load("prod")
    AzureBlobStorageContainer(container_name=container, credentials=credentials).save("team")
    check_saved_by_reference("azure-blob-storage/team", "credentials",
                             "azure-blob-storage-credentials/prod", ACCOUNT_KEY)
    check_round_trip(azure, container, "", "azure-blob-storage/team")


def test_created_and_inspected_from_the_shell(azure, container):
    check_cli(("azure-blob-storage-credentials/prod", {"connection_string": azure.server.connection_string}),
              ("azure-blob-storage/team", {"container_name": container, "blob_folder": "team"}),
              "credentials", ACCOUNT_KEY)
    check_round_trip(azure, container, "team", "azure-blob-storage/team")


CONNECTION = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=secret-1;"


@pytest.mark.parametrize("fields, error, message", [
    ({"credentials": AzureBlobStorageContainer(container_name="c")}, TypeError,
     "takes a block of type 'azure-blob-storage-credentials'"),
    ({"credentials": {"connection_string": CONNECTION, "account_url": "https://a.blob.core.windows.net"}},
     ValueError, "connection_string or account_url, not both"),
    ({"credentials": {"account_url": "a.blob.core.windows.net"}}, ValueError, "account_url must be"),
    ({"credentials": {"connection_string": CONNECTION}, "account_key": "secret-2"}, ValueError,
     "account_key and credentials.connection_string both say how to connect"),
    ({"credentials": {"account_url": "https://a.blob.core.windows.net"}, "account_name": "b"}, ValueError,
     "account_name and credentials.account_url differ"),
    ({"credentials": {"account_url": "https://a.blob.core.windows.net"}, "connection_string": CONNECTION},
     ValueError, "connection_string and credentials.account_url"),
    ({"credentials": {"account_url": "http://127.0.0.1:1/a"}}, ValueError, "account_url is not https"),
])
def test_bad_credentials_name_the_field(fields, error, message):
    with pytest.raises(error, match=message) as info:
        AzureBlobStorageContainer(container_name="c", **fields)
    assert "secret-" not in str(info.value)
