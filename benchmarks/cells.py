"""Benchmark cells. Each runs in a fresh process: `python cells.py CELL DIR [N]`.

A cell prints one JSON object: seconds for the timed part, per-op milliseconds,
peak RSS growth over the payload, bytes read (/proc/self/io rchar) and bytes on
disk. Setup (imports, building the payload, starting servers) is not timed.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import sys
import time

SMALL = {"id": 0, "name": "benchmark-task", "tags": ["a", "b", "c"], "score": 0.5,
         "payload": "x" * 48}  # ~130 bytes pickled
BIG = 200 * 1024 * 1024


def small(i: int) -> dict:
    return {**SMALL, "id": i}


def rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rchar() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return 0


def disk_bytes(root: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            total += os.path.getsize(os.path.join(dirpath, name))
    return total


def report(**fields) -> None:
    print(json.dumps(fields))


# -- plain Python floor -----------------------------------------------------------------

def floor_write(root: str, n: int) -> None:
    os.makedirs(root, exist_ok=True)
    t = time.perf_counter()
    for i in range(n):
        with open(os.path.join(root, f"{i}.pkl"), "wb") as f:
            f.write(pickle.dumps(small(i)))
    dt = time.perf_counter() - t
    report(seconds=dt, per_op_ms=dt / n * 1e3, disk=disk_bytes(root))


def floor_hit(root: str, n: int) -> None:
    r0 = rchar()
    t = time.perf_counter()
    for i in range(n):
        with open(os.path.join(root, f"{i}.pkl"), "rb") as f:
            pickle.loads(f.read())
    dt = time.perf_counter() - t
    report(seconds=dt, per_op_ms=dt / n * 1e3, bytes_read=rchar() - r0)


def floor_big_write(root: str, n: int) -> None:
    os.makedirs(root, exist_ok=True)
    data = os.urandom(BIG)
    base = rss_bytes()
    t = time.perf_counter()
    with open(os.path.join(root, "big.pkl"), "wb") as f:
        pickle.dump(data, f, protocol=5)
    dt = time.perf_counter() - t
    report(seconds=dt, rss_growth=(rss_bytes() - base) / BIG, disk=disk_bytes(root) / BIG)


def floor_big_read(root: str, n: int) -> None:
    base, r0 = rss_bytes(), rchar()
    t = time.perf_counter()
    with open(os.path.join(root, "big.pkl"), "rb") as f:
        value = pickle.load(f)
    dt = time.perf_counter() - t
    assert len(value) == BIG
    report(seconds=dt, rss_growth=(rss_bytes() - base) / BIG, bytes_read=(rchar() - r0) / BIG)


# -- joblib.Memory ------------------------------------------------------------------------

def _joblib(root: str):
    from joblib import Memory

    memory = Memory(root, verbose=0)
    return memory.cache(small), memory


def joblib_write(root: str, n: int) -> None:
    cached, _ = _joblib(root)
    t = time.perf_counter()
    for i in range(n):
        cached(i)
    dt = time.perf_counter() - t
    report(seconds=dt, per_op_ms=dt / n * 1e3, disk=disk_bytes(root))


def joblib_hit(root: str, n: int) -> None:
    cached, _ = _joblib(root)
    r0 = rchar()
    t = time.perf_counter()
    for i in range(n):
        cached(i)
    dt = time.perf_counter() - t
    report(seconds=dt, per_op_ms=dt / n * 1e3, bytes_read=rchar() - r0)


_BIG_VALUE: bytes | None = None


def big_value(seed: int) -> bytes:
    """The function joblib caches: returns the payload prepared outside the timing."""
    assert _BIG_VALUE is not None, "cache miss in a read cell"
    return _BIG_VALUE


def joblib_big_write(root: str, n: int) -> None:
    global _BIG_VALUE
    from joblib import Memory

    cached = Memory(root, verbose=0).cache(big_value)
    _BIG_VALUE = os.urandom(BIG)
    base = rss_bytes()
    t = time.perf_counter()
    cached(0)
    dt = time.perf_counter() - t
    report(seconds=dt, rss_growth=(rss_bytes() - base) / BIG, disk=disk_bytes(root) / BIG)


def joblib_big_read(root: str, n: int) -> None:
    from joblib import Memory

    cached = Memory(root, verbose=0).cache(big_value)
    base, r0 = rss_bytes(), rchar()
    t = time.perf_counter()
    value = cached(0)
    dt = time.perf_counter() - t
    assert len(value) == BIG
    report(seconds=dt, rss_growth=(rss_bytes() - base) / BIG, bytes_read=(rchar() - r0) / BIG)


# -- stashflow ------------------------------------------------------------------------------

def _stashflow_env(root: str) -> None:
    os.environ["STASHFLOW_HOME"] = os.path.join(root, "home")
    os.environ["STASHFLOW_LOCAL_STORAGE_PATH"] = os.path.join(root, "storage")


def _stashflow_tasks():
    from stashflow import flow, task
    from stashflow.cache_policies import INPUTS, TASK_SOURCE

    # DEFAULT includes RUN_ID (a new run recomputes, as in Prefect): cache across runs here.
    @task(cache_policy=INPUTS + TASK_SOURCE)
    def make(i: int) -> dict:
        return small(i)

    @flow
    def many(n: int) -> None:
        for i in range(n):
            make(i)

    return make, many


def stashflow_write(root: str, n: int) -> None:
    _stashflow_env(root)
    make, _ = _stashflow_tasks()
    make(-1)  # warm: plugin loading, settings, storage resolution
    t = time.perf_counter()
    for i in range(n):
        make(i)
    dt = time.perf_counter() - t
    report(seconds=dt, per_op_ms=dt / n * 1e3, disk=disk_bytes(os.path.join(root, "storage")))


def stashflow_hit(root: str, n: int) -> None:
    _stashflow_env(root)
    make, _ = _stashflow_tasks()
    make(-1)
    r0 = rchar()
    t = time.perf_counter()
    for i in range(n):
        make(i)
    dt = time.perf_counter() - t
    report(seconds=dt, per_op_ms=dt / n * 1e3, bytes_read=rchar() - r0)


def stashflow_big_write(root: str, n: int) -> None:
    _stashflow_env(root)
    from stashflow import ResultStore

    store = ResultStore(os.path.join(root, "storage"))
    store.write("warm", 0)
    data = os.urandom(BIG)
    base = rss_bytes()
    t = time.perf_counter()
    store.write("big", data)
    dt = time.perf_counter() - t
    report(seconds=dt, rss_growth=(rss_bytes() - base) / BIG,
           disk=os.path.getsize(os.path.join(root, "storage", "big")) / BIG)


def stashflow_big_read(root: str, n: int) -> None:
    _stashflow_env(root)
    from stashflow import ResultStore

    store = ResultStore(os.path.join(root, "storage"))
    store.read("warm")
    base, r0 = rss_bytes(), rchar()
    t = time.perf_counter()
    value = store.read("big")
    dt = time.perf_counter() - t
    assert len(value) == BIG
    report(seconds=dt, rss_growth=(rss_bytes() - base) / BIG, bytes_read=(rchar() - r0) / BIG)


def stashflow_signed_big_write(root: str, n: int) -> None:
    """The 200 MiB write with a signing key: HMAC-SHA256 over the payload too."""
    os.environ["STASHFLOW_RESULTS_SIGNING_KEY"] = "benchmark key"
    stashflow_big_write(root, n)


def stashflow_signed_big_read(root: str, n: int) -> None:
    """The 200 MiB load with a signing key: verified into a private copy, decoded from it."""
    os.environ["STASHFLOW_RESULTS_SIGNING_KEY"] = "benchmark key"
    stashflow_big_read(root, n)


def _frame(rows: int = BIG // 40):
    """A DataFrame of 5 columns of 8-byte numbers (ids and random floats): 200 MiB by default."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame({"id": np.arange(rows), **{f"x{i}": rng.random(rows) for i in range(4)}})


def arrow_floor_write(root: str, n: int) -> None:
    """The Parquet floor: pyarrow writing the frame to a local file, pandas conversion included."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(root, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(_frame(100)), os.path.join(root, "warm.parquet"))
    df = _frame()
    base = rss_bytes()
    t = time.perf_counter()
    pq.write_table(pa.Table.from_pandas(df), os.path.join(root, "big.parquet"))
    dt = time.perf_counter() - t
    report(seconds=dt, rss_growth=(rss_bytes() - base) / BIG,
           disk=os.path.getsize(os.path.join(root, "big.parquet")) / BIG)


def arrow_floor_read(root: str, n: int) -> None:
    import pyarrow.parquet as pq

    pq.read_table(os.path.join(root, "warm.parquet")).to_pandas()
    base, r0 = rss_bytes(), rchar()
    t = time.perf_counter()
    df = pq.read_table(os.path.join(root, "big.parquet")).to_pandas()
    dt = time.perf_counter() - t
    assert len(df) == BIG // 40
    report(seconds=dt, rss_growth=(rss_bytes() - base) / BIG, bytes_read=(rchar() - r0) / BIG)


def stashflow_parquet_write(root: str, n: int) -> None:
    """The same frame through ResultStore on local disk with the stashflow-arrow `parquet` serializer."""
    _stashflow_env(root)
    from stashflow import ResultStore

    store = ResultStore(os.path.join(root, "storage"), serializer="parquet")
    store.write("warm", _frame(100))
    df = _frame()
    base = rss_bytes()
    t = time.perf_counter()
    store.write("big", df)
    dt = time.perf_counter() - t
    report(seconds=dt, rss_growth=(rss_bytes() - base) / BIG,
           disk=os.path.getsize(os.path.join(root, "storage", "big")) / BIG)


def stashflow_parquet_read(root: str, n: int) -> None:
    _stashflow_env(root)
    from stashflow import ResultStore

    store = ResultStore(os.path.join(root, "storage"), serializer="parquet")
    store.read("warm")
    base, r0 = rss_bytes(), rchar()
    t = time.perf_counter()
    df = store.read("big")
    dt = time.perf_counter() - t
    assert len(df) == BIG // 40
    report(seconds=dt, rss_growth=(rss_bytes() - base) / BIG, bytes_read=(rchar() - r0) / BIG)


def stashflow_store_hit(root: str, n: int) -> None:
    """A hit through ResultStore.read only (no engine), against a store holding n records."""
    _stashflow_env(root)
    from stashflow import ResultStore

    store = ResultStore(os.path.join(root, "storage"))
    keys = [f"k{i % 1000}/{i}" for i in range(0, n, max(1, n // 200))][:200]
    store.read(keys[0])
    t = time.perf_counter()
    for key in keys:
        store.read(key)
    dt = time.perf_counter() - t
    report(seconds=dt, per_op_ms=dt / len(keys) * 1e3)


def stashflow_store_fill(root: str, n: int) -> None:
    _stashflow_env(root)
    from stashflow import ResultStore

    store = ResultStore(os.path.join(root, "storage"))
    t = time.perf_counter()
    for i in range(n):
        store.write(f"k{i % 1000}/{i}", small(i))
    dt = time.perf_counter() - t
    report(seconds=dt, per_op_ms=dt / n * 1e3)


# -- Prefect (run.py --prefect: these cells run in Prefect's own venv) ------------------------
# Each cell's untimed warm-up call starts Prefect's ephemeral API server (about 10 s here), so
# the timed loop measures task calls against a running server, as a user's script would.

def _prefect_env(root: str) -> None:
    # Prefect does not create missing parents of its home; its server then cannot open its
    # database and exits (the "exit code 3" an earlier attempt here ran into).
    os.makedirs(os.path.join(root, "home"), exist_ok=True)
    os.environ["PREFECT_HOME"] = os.path.join(root, "home")
    os.environ["PREFECT_LOCAL_STORAGE_PATH"] = os.path.join(root, "storage")
    os.environ["PREFECT_LOGGING_LEVEL"] = "ERROR"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # no DNS look-ups on a closed network
    os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"


def _prefect_timed(fn, calls: list[int], before=None) -> tuple[float, object]:
    """Call `fn` as a cached, persisted Prefect task once per item of `calls`, inside a flow.

    Inside a flow is Prefect's fast path: a task called on its own makes its own task run
    through the API and costs ~33 ms here. The warm-up call (-1) is not timed; `before` runs
    between it and the timed calls.
    """
    from prefect import flow, task
    from prefect.cache_policies import INPUTS, TASK_SOURCE

    # The same policy as the stashflow cells: cache across runs on inputs and source.
    cached = task(cache_policy=INPUTS + TASK_SOURCE, persist_result=True)(fn)

    @flow
    def timed() -> tuple[float, object]:
        cached(-1)
        if before:
            before()
        value = None
        t = time.perf_counter()
        for i in calls:
            value = cached(i)
        return time.perf_counter() - t, value

    return timed()


def prefect_write(root: str, n: int) -> None:
    _prefect_env(root)
    dt, _ = _prefect_timed(small, list(range(n)))
    report(seconds=dt, per_op_ms=dt / n * 1e3, disk=disk_bytes(os.path.join(root, "storage")))


def prefect_hit(root: str, n: int) -> None:
    _prefect_env(root)
    r0 = [0]
    dt, _ = _prefect_timed(small, list(range(n)), before=lambda: r0.__setitem__(0, rchar()))
    report(seconds=dt, per_op_ms=dt / n * 1e3, bytes_read=rchar() - r0[0])


def prefect_big_write(root: str, n: int) -> None:
    global _BIG_VALUE
    _prefect_env(root)
    storage = os.path.join(root, "storage")
    marks = {}

    def before() -> None:
        global _BIG_VALUE
        _BIG_VALUE = os.urandom(BIG)
        marks.update(disk=disk_bytes(storage), rss=rss_bytes())

    _BIG_VALUE = b"warm"
    dt, _ = _prefect_timed(big_value, [0], before)
    report(seconds=dt, rss_growth=(rss_bytes() - marks["rss"]) / BIG,
           disk=(disk_bytes(storage) - marks["disk"]) / BIG)


def prefect_big_read(root: str, n: int) -> None:
    _prefect_env(root)
    marks = {}
    dt, value = _prefect_timed(big_value, [0],
                               lambda: marks.update(rss=rss_bytes(), rchar=rchar()))
    assert len(value) == BIG
    report(seconds=dt, rss_growth=(rss_bytes() - marks["rss"]) / BIG,
           bytes_read=(rchar() - marks["rchar"]) / BIG)


# -- S3 (a moto server started by run.py; endpoint in BENCH_S3_ENDPOINT) -------------------

def _s3fs():
    import s3fs

    return s3fs.S3FileSystem(key="bench", secret="bench-secret",
                             endpoint_url=os.environ["BENCH_S3_ENDPOINT"],
                             skip_instance_cache=True, use_listings_cache=False)


def s3_raw_roundtrip(root: str, n: int) -> None:
    """The same bytes through plain s3fs: streamed pickle.dump up, pickle.load down."""
    fs = _s3fs()
    bucket = f"raw-{os.getpid()}"
    fs.mkdir(bucket)
    data = os.urandom(BIG)
    base = rss_bytes()
    t = time.perf_counter()
    with fs.open(f"{bucket}/big.pkl", "wb", block_size=8 * 1024 * 1024) as f:
        pickle.dump(data, f, protocol=5)
    with fs.open(f"{bucket}/big.pkl", "rb", block_size=8 * 1024 * 1024) as f:
        value = pickle.load(f)
    dt = time.perf_counter() - t
    assert value == data
    report(seconds=dt, rss_growth=(rss_bytes() - base) / BIG)


def s3_stashflow_roundtrip(root: str, n: int) -> None:
    _stashflow_env(root)
    from stashflow import ResultStore
    from stashflow_s3 import S3Bucket

    bucket = f"sf-{os.getpid()}"
    _s3fs().mkdir(bucket)
    store = ResultStore(S3Bucket(bucket_name=bucket, endpoint_url=os.environ["BENCH_S3_ENDPOINT"],
                                 aws_access_key_id="bench", aws_secret_access_key="bench-secret"))
    store.write("warm", 0)
    data = os.urandom(BIG)
    base = rss_bytes()
    t = time.perf_counter()
    store.write("big", data)
    value = store.read("big")
    dt = time.perf_counter() - t
    assert value == data
    report(seconds=dt, rss_growth=(rss_bytes() - base) / BIG)


def import_time(root: str, n: int) -> None:
    module = os.environ["BENCH_MODULE"]
    t = time.perf_counter()
    __import__(module)
    report(seconds=time.perf_counter() - t)


CELLS = {name: fn for name, fn in globals().items()
         if callable(fn) and fn.__module__ == __name__ and "_" in name and not name.startswith("_")
         and name not in ("rss_bytes", "disk_bytes", "report", "big_value")}
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

if __name__ == "__main__":
    CELLS[sys.argv[1]](sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 200)
