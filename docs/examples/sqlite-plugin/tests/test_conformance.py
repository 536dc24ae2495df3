"""The example plugin passes stashflow's conformance kit: fixtures are all it supplies."""

import pytest
from stashflow.testing import SerializerTests, StorageBackendTests
from stashflow_sqlite import JSONLinesSerializer, SQLiteStorage


class TestSQLiteStorage(StorageBackendTests):
    @pytest.fixture
    def backend(self, tmp_path):
        return SQLiteStorage(path=str(tmp_path / "results.db"))


class TestJSONLinesSerializer(SerializerTests):
    @pytest.fixture
    def serializer(self):
        return JSONLinesSerializer()

    @pytest.fixture
    def values(self):
        return [[], [1, "two", None], [{"id": 1, "tags": ["a", "b"]}, {"id": 2, "text": "line\nbreak"}],
                [{"n": i} for i in range(10_000)]]

    @pytest.fixture
    def unsupported_values(self):
        return [{"not": "a list"}, [{1, 2}], [object()]]

    @pytest.fixture
    def corrupt_payloads(self):
        # The kit's defaults include b"", which is a valid (empty) list here.
        return [b'{"id": 1}\n{"id": 2', b"not json\n", b"\xff\xfe\n"]


def test_store_by_url_with_the_plugin_serializer(tmp_path):
    from stashflow import ResultStore

    store = ResultStore(f"sqlite://{tmp_path}/results.db", serializer="jsonl")
    store.write("rows/today", [{"id": 1}, {"id": 2}])
    assert store.read("rows/today") == [{"id": 1}, {"id": 2}]
    assert list(store.list("rows/")) == ["rows/today"]
