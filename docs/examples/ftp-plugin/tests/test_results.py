"""Results on the FTP server: a flow run twice is served from it; a store by URL."""

from stashflow import ResultStore, flow, task
from stashflow.cache_policies import INPUTS, TASK_SOURCE
from stashflow.storage import record_keys


def test_a_flow_run_twice_is_served_from_ftp(ftp_storage):
    ran = []

    @task(cache_policy=INPUTS + TASK_SOURCE, result_storage=ftp_storage)
    def square(x):
        ran.append(x)
        return x * x

    @flow
    def numbers():
        return [square(i) for i in range(5)]

    assert numbers() == [0, 1, 4, 9, 16]
    assert ran == [0, 1, 2, 3, 4]
    assert numbers() == [0, 1, 4, 9, 16]
    assert ran == [0, 1, 2, 3, 4], "the second run computed again instead of reading from FTP"
    keys = sorted(record_keys(ftp_storage))
    assert len(keys) == 5
    store = ResultStore(ftp_storage)
    assert sorted(store.read(key) for key in keys) == [0, 1, 4, 9, 16]


def test_a_store_by_url_writes_files_on_the_server(ftp_server, ftp_url):
    from stashflow_ftp import FtpStorage

    host, port, served = ftp_server
    store = ResultStore(f"{ftp_url}/by-url/results", serializer="json")
    assert isinstance(store.storage, FtpStorage)
    assert (store.storage.host, store.storage.port, store.storage.folder) == (host, port, "by-url/results")
    store.write("rows/today", [{"id": 1}, {"id": 2}])
    assert store.read("rows/today") == [{"id": 1}, {"id": 2}]
    assert (served / "by-url" / "results" / "rows" / "today").is_file()
    assert store.storage.password.get_secret_value() not in repr(store.storage)
