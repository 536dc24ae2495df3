from stashflow import ResultStore


def test_round_trip_on_local_disk_writes_one_file(tmp_path):
    store = ResultStore(tmp_path)
    store.write("a/b.pkl", {"x": 1})
    assert store.read("a/b.pkl") == {"x": 1}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.pkl"]
