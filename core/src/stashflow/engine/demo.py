"""`stashflow demo`: a small flow, run twice in fresh processes on the local default storage.

The first run computes every task and writes its record; the second run (a new
Python process, so nothing is cached in memory) loads every task's value from
the records instead of running it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

from stashflow.cache_policies import hash_inputs
from stashflow.engine import flow, task

PREFIX = "stashflow-demo"


@task(result_storage_key=PREFIX + "/temperatures-{parameters[city]}.pickle")
def fetch_temperatures(city: str) -> list[float]:
    """Pretend to call a slow weather API."""
    time.sleep(0.25)
    seed = sum(map(ord, city))
    return [round(5 + (seed * (day + 3)) % 200 / 10, 1) for day in range(7)]


@task(cache_key_fn=lambda context, parameters: f"{PREFIX}/stats-{hash_inputs(parameters)}")
def summarize(city: str, temperatures: list[float]) -> dict:
    """Pretend to crunch numbers."""
    time.sleep(0.1)
    return {"city": city, "min": min(temperatures), "max": max(temperatures),
            "mean": round(sum(temperatures) / len(temperatures), 1)}


@task(result_storage_key=PREFIX + "/report.json", result_serializer="json")
def build_report(stats: list[dict]) -> list[str]:
    return [f"{s['city']:<8} min {s['min']:>5}  mean {s['mean']:>5}  max {s['max']:>5}"
            for s in sorted(stats, key=lambda s: s["mean"])]


@flow(name="weather-report")
def weather_report(cities: list[str]) -> list[str]:
    temperatures = fetch_temperatures.map(cities)
    stats = [summarize.submit(city, t) for city, t in zip(cities, temperatures, strict=True)]
    return build_report(stats)


CITIES = ["Oslo", "Lima", "Nairobi", "Osaka"]


def _child() -> None:
    """One run, in this process: a line per task run, then a JSON summary line."""
    from stashflow.registry import get_registry

    get_registry()  # load plugins before the clock starts
    started = time.perf_counter()
    state = weather_report(CITIES, return_state=True)
    elapsed = time.perf_counter() - started
    runs = state.run.task_runs
    for run in runs:
        verb = "cached" if run.state == "Cached" else "ran   "
        print(f"    {run.task_name:<20} {verb} {run.duration * 1000:8.1f} ms   {run.key}")
    for line in state.result():
        print(f"    | {line}")
    print(json.dumps({"elapsed": elapsed, "tasks": len(runs),
                      "cached": sum(r.state == "Cached" for r in runs)}))


def run_demo(fresh: bool = True, echo: Callable[[str], None] = print) -> list[dict]:
    """Run the demo flow twice in subprocesses; returns each run's summary."""
    from stashflow.results import ResultStore

    store = ResultStore()
    echo(f"Results go to the default storage: {store.storage.url_for('')}")
    echo("(set STASHFLOW_LOCAL_STORAGE_PATH or STASHFLOW_DEFAULT_RESULT_STORAGE_BLOCK to move them)")
    if fresh:
        for key in list(store.list(PREFIX + "/")):
            store.delete(key)
    summaries = []
    for number, title in ((1, "computes and writes every result"),
                          (2, "a new process: every task is served from its record")):
        echo("")
        echo(f"Run {number} ({title}):")
        proc = subprocess.run([sys.executable, "-m", "stashflow.engine.demo", "--child"],
                              capture_output=True, text=True, env=dict(os.environ), check=False)
        if proc.returncode != 0:
            echo(proc.stdout + proc.stderr)
            raise RuntimeError(f"demo run {number} failed (exit code {proc.returncode})")
        *lines, last = proc.stdout.rstrip("\n").split("\n")
        for line in lines:
            echo(line)
        summary = json.loads(last)
        summaries.append(summary)
        echo(f"  {summary['tasks']} task runs, {summary['cached']} from cache, "
             f"flow took {summary['elapsed'] * 1000:.0f} ms")
    echo("")
    echo(f"Records: {store.storage.url_for(PREFIX)}/  (inspect with ResultStore().read_record(key))")
    return summaries


if __name__ == "__main__":  # pragma: no cover - run by run_demo in a subprocess
    if sys.argv[1:] == ["--child"]:
        _child()
    else:
        run_demo()
