"""STASHFLOW_RESULTS_TRUSTED_SERIALIZERS: honoured by ResultStore, tasks, flows and the CLI.

A record naming a serializer outside the trusted set is refused before a single
payload byte is decoded, whoever reads it.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from stashflow import ResultStore, flow, task
from stashflow.cache_policies import INPUTS
from stashflow.cli import main
from stashflow.exceptions import UntrustedSerializer


class Boom:
    """Unpickling this creates a file: proof that a payload was decoded."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.fixture
def pickled_boom(tmp_path):
    root, marker = tmp_path / "root", tmp_path / "decoded"
    ResultStore(root, "pickle").write("boom", Boom(marker))
    return root, marker


def test_the_setting_restricts_a_store_built_without_arguments(pickled_boom, monkeypatch):
    root, marker = pickled_boom
    monkeypatch.setenv("STASHFLOW_RESULTS_TRUSTED_SERIALIZERS", "json, msgpack")
    store = ResultStore(root)
    assert store.trusted_serializers == {"json", "msgpack"}
    with pytest.raises(UntrustedSerializer, match="'pickle'") as err:
        store.read("boom")
    assert "STASHFLOW_RESULTS_TRUSTED_SERIALIZERS" in str(err.value)
    assert not marker.exists()
    # an explicit argument wins over the setting, like every other setting
    assert ResultStore(root, trusted_serializers=None).trusted_serializers is None


def test_the_setting_from_the_profile_is_honoured_too(pickled_boom):
    root, marker = pickled_boom
    result = CliRunner().invoke(main, ["config", "set", "STASHFLOW_RESULTS_TRUSTED_SERIALIZERS=json"])
    assert result.exit_code == 0, result.output
    with pytest.raises(UntrustedSerializer):
        ResultStore(root).read("boom")
    assert not marker.exists()


def test_unset_means_every_installed_serializer(pickled_boom):
    root, marker = pickled_boom
    assert ResultStore(root).trusted_serializers is None
    ResultStore(root).read("boom")
    assert marker.exists()


def test_a_task_never_decodes_an_untrusted_cached_record_and_overwrites_it(tmp_path, monkeypatch):
    root, marker = tmp_path / "root", tmp_path / "decoded"
    calls = []

    @task(cache_policy=INPUTS, result_storage=str(root), result_serializer="json",
          result_storage_key="answer")
    def answer(x):
        calls.append(x)
        return {"x": x}

    ResultStore(root, "pickle").write("answer", Boom(marker))  # planted by someone else
    monkeypatch.setenv("STASHFLOW_RESULTS_TRUSTED_SERIALIZERS", "json")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert answer(1) == {"x": 1}
    assert calls == [1] and not marker.exists()
    assert any("unusable" in str(w.message) for w in caught)
    assert ResultStore(root).read_record("answer").metadata.serializer == "json"
    assert answer(1) == {"x": 1} and calls == [1]  # the repaired record is a hit


def test_a_task_that_would_write_what_it_cannot_read_back_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("STASHFLOW_RESULTS_TRUSTED_SERIALIZERS", "json")

    @task(persist_result=True, result_storage=str(tmp_path))
    def default_pickle():
        return 1

    with pytest.raises(UntrustedSerializer, match="choose a trusted result_serializer"):
        default_pickle()


def test_a_flow_reads_its_tasks_records_only_through_trusted_serializers(tmp_path, monkeypatch):
    root, marker = tmp_path / "root", tmp_path / "decoded"
    ResultStore(root, "pickle").write("planted", Boom(marker))

    @task(cache_key_fn=lambda ctx, params: "planted")
    def step():
        return [1, 2]

    @flow(result_storage=str(root), result_serializer="msgpack")
    def pipeline():
        return step()

    monkeypatch.setenv("STASHFLOW_RESULTS_TRUSTED_SERIALIZERS", "msgpack")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert pipeline() == [1, 2]
    assert not marker.exists()
    assert ResultStore(root).read("planted") == [1, 2]


def test_cli_results_show_value_refuses_an_untrusted_record(pickled_boom, monkeypatch):
    root, marker = pickled_boom
    monkeypatch.setenv("STASHFLOW_RESULTS_TRUSTED_SERIALIZERS", "json")
    result = CliRunner().invoke(main, ["results", "show", "boom", "--storage", str(root), "--value"])
    assert result.exit_code == 1
    assert "not trust" in result.output and "Traceback" not in result.output
    assert not marker.exists()
    shown = CliRunner().invoke(main, ["results", "show", "boom", "--storage", str(root)])
    assert shown.exit_code == 0 and "serializer: pickle" in shown.output  # the header is fine


def test_value_help_links_the_trust_model():
    result = CliRunner().invoke(main, ["results", "show", "--help"])
    assert "guarantees" in result.output


def test_pickle_records_are_plain_pickle_bytes_after_the_header(tmp_path):
    """What 'anyone who can write the storage runs code' means: the payload is a pickle."""
    meta = ResultStore(tmp_path, "pickle").write("v", {"a": 1})
    data = (tmp_path / "v").read_bytes()
    assert pickle.loads(data[meta.header_size:]) == {"a": 1}
