"""What is AzureBlobStorageContainer's own: its configuration, URL forms and credentials,
ADLS directory entries. tests/cloud runs the rest."""

from __future__ import annotations

import pytest
from stashflow.exceptions import StorageError
from stashflow.storage import record_keys
from stashflow_azure import AzureBlobStorageContainer


def test_url_form_and_url_for():
    b = AzureBlobStorageContainer.from_url("az://results/some/folder")
    assert (b.container_name, b.blob_folder, b.account_name) == ("results", "some/folder", None)
    assert b.url_for("k") == "az://results/some/folder/k"
    adls = AzureBlobStorageContainer.from_url("abfs://results@myaccount.dfs.core.windows.net/f")
    assert (adls.container_name, adls.blob_folder, adls.account_name) == (
        "results", "f", "myaccount")
    assert AzureBlobStorageContainer.from_url("az://results").url_for("a/b") == "az://results/a/b"


def test_bad_configuration_is_refused(monkeypatch):
    with pytest.raises(TypeError, match="container_name"):
        AzureBlobStorageContainer()
    with pytest.raises(ValueError, match="blob_folder"):
        AzureBlobStorageContainer(container_name="c", blob_folder="a/../b")
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(StorageError, match="Set connection_string, or account_name"):
        AzureBlobStorageContainer(container_name="c").exists("k")


def test_a_missing_container_fails_reads_and_checks_too(azure):
    backend = AzureBlobStorageContainer(container_name="no-such-container",
                                        connection_string=azure.server.connection_string)
    message = ("azure-blob-storage: could not {} az://no-such-container/k/1: "
               "container 'no-such-container' does not exist")
    with pytest.raises(StorageError, match=message.format("read")):
        backend.read("k/1")
    with pytest.raises(StorageError, match=message.format("check")):
        backend.exists("k/1")


def test_a_refused_request_is_a_storage_error_without_the_secret(azure, container):
    wrong = azure.server.connection_string.replace("AccountKey=Eby8", "AccountKey=AAAA")
    backend = AzureBlobStorageContainer(container_name=container, connection_string=wrong)
    with pytest.raises(StorageError) as caught:
        backend.write("k", b"x")
    assert str(caught.value).startswith(f"azure-blob-storage: could not write az://{container}/k:")
    assert "AuthorizationFailure" in str(caught.value) or "AuthenticationFailed" in str(
        caught.value), str(caught.value)
    assert "AAAA" not in str(caught.value)
    assert azure.names(container) == []


def test_directory_entries_are_neither_listed_nor_values(backend, azure, container):
    backend.write("a/1", b"x")
    raw = azure.raw.get_container_client(container)
    raw.upload_blob("results/v1/adls-dir", b"", metadata={"hdi_isfolder": "true"})
    raw.upload_blob("results/v1/a/adlfs-dir", b"", metadata={"is_directory": "true"})
    assert sorted(backend.list()) == ["a/1"]
    assert sorted(record_keys(backend)) == ["a/1"]
    assert not backend.exists("adls-dir")
    assert not backend.exists("a/adlfs-dir")
