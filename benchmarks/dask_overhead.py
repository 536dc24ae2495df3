"""What running tasks through stashflow on Dask costs, over plain Dask.

    python benchmarks/dask_overhead.py [--tasks 200] [--ms 20] [--workers 2] [--repeat 3] [--busy]

One LocalCluster (`--workers` single-threaded worker processes, started once and
not timed) runs every Dask variant; each variant runs `--repeat` times after
one warm-up and the median wall time is reported:

- plain Dask: `client.gather(client.map(work, range(N)))`;
- stashflow on DaskTaskRunner (joining that cluster): `task(work).map(range(N))` in
  a flow, not persisted; persisted to a local directory (first run, a fresh
  directory each time); and its rerun, where every task is a cache hit;
- stashflow on the thread runner with as many threads as workers, for reference.

`work` sleeps `--ms` milliseconds (with `--busy`, spins the CPU that long).
"Overhead/task" is (variant - plain Dask) / N of wall time: with W workers in
parallel, each task costs about W times that in worker and client time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

DELAY = float(os.environ.get("SF_BENCH_DELAY", "0.02"))
BUSY = os.environ.get("SF_BENCH_BUSY") == "1"


def work(i: int) -> int:
    if BUSY:
        end = time.perf_counter() + DELAY
        while time.perf_counter() < end:
            pass
    else:
        time.sleep(DELAY)
    return i


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--ms", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--busy", action="store_true", help="spin the CPU instead of sleeping")
    args = parser.parse_args()
    # The workers read these when they import this module (as __mp_main__).
    os.environ["SF_BENCH_DELAY"] = str(args.ms / 1000)
    os.environ["SF_BENCH_BUSY"] = "1" if args.busy else "0"
    global DELAY, BUSY
    DELAY, BUSY = args.ms / 1000, args.busy

    from distributed import Client, LocalCluster
    from stashflow import flow, task
    from stashflow.cache_policies import INPUTS
    from stashflow.engine import ThreadPoolTaskRunner
    from stashflow_dask import DaskTaskRunner

    n = args.tasks
    work_dir = Path(tempfile.mkdtemp(prefix="stashflow-dask-bench-"))
    os.environ["STASHFLOW_HOME"] = str(work_dir / "home")
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address="127.0.0.1:0",
                           local_directory=str(work_dir / "dask"))
    client = Client(cluster, set_as_default=False)
    plain_task = task(work)
    persisted = task(work, cache_policy=INPUTS)

    def stashflow_run(runner, t, storage=None):
        @flow(task_runner=runner, result_storage=storage)
        def bench():
            return t.map(range(n)).result()

        assert bench() == list(range(n))

    def on_dask():
        return DaskTaskRunner(address=cluster.scheduler_address)

    fresh = iter(range(10_000))
    variants = {
        "plain Dask client.map": lambda: client.gather(client.map(work, range(n), pure=False)),
        "stashflow DaskTaskRunner": lambda: stashflow_run(on_dask(), plain_task),
        "stashflow DaskTaskRunner, persisted": lambda: stashflow_run(
            on_dask(), persisted, work_dir / f"results-{next(fresh)}"),
        "stashflow DaskTaskRunner, all cached": lambda: stashflow_run(
            on_dask(), persisted, work_dir / "cached"),
        f"stashflow thread runner ({args.workers} threads)": lambda: stashflow_run(
            ThreadPoolTaskRunner(args.workers), plain_task),
        f"stashflow thread runner ({args.workers} threads), persisted": lambda: stashflow_run(
            ThreadPoolTaskRunner(args.workers), persisted, work_dir / f"results-{next(fresh)}"),
    }
    try:
        results = {}
        for name, run in variants.items():
            run()  # warm-up (for "all cached": fills the cache)
            results[name] = statistics.median(timed(run) for _ in range(args.repeat))
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(work_dir, ignore_errors=True)

    import dask
    import distributed

    base = results["plain Dask client.map"]
    ideal = n * args.ms / 1000 / args.workers
    print(f"{n} tasks of {args.ms:g} ms ({'busy' if args.busy else 'sleep'}) on {args.workers} "
          f"worker processes x 1 thread; median of {args.repeat}; ideal {ideal:.2f} s")
    print(f"python {sys.version.split()[0]}, dask {dask.__version__}, distributed "
          f"{distributed.__version__}, {os.cpu_count()} cores")
    print(f"{'variant':<52} {'total s':>8} {'ms/task':>8} {'overhead/task vs plain Dask':>28}")
    for name, seconds in results.items():
        extra = "" if name.startswith("plain") else f"{(seconds - base) / n * 1000:+.2f} ms"
        print(f"{name:<52} {seconds:>8.3f} {seconds / n * 1000:>8.2f} {extra:>28}")


if __name__ == "__main__":
    main()
