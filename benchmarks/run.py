"""Run every benchmark cell in a fresh process and print the comparison table.

    python benchmarks/run.py [--repeat 3] [--quick] [--json FILE]

Each cell runs `--repeat` times (median reported), each time in a new Python
process; write cells get a fresh directory, read cells reuse the directory of
the write before them. Ratios are computed within this one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cell(name: str, root: Path, n: int, env: dict | None = None, python: str | None = None) -> dict:
    """Run one cell in a new Python process and return what it reported."""
    # Flush the last cell's dirty pages first, so their write-back does not land in
    # this cell's timing (the 200 MiB cells leave that much behind).
    os.sync()
    out = subprocess.run([python or sys.executable, str(HERE / "cells.py"), name, str(root), str(n)],
                         capture_output=True, text=True, env={**os.environ, **(env or {})},
                         timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"cell {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median(results: list[dict]) -> dict:
    keys = results[0].keys()
    return {k: statistics.median(r[k] for r in results) for k in keys}


def pair(write: str, read: str | None, n: int, work: Path,
         python: str | None = None) -> tuple[dict, dict | None]:
    """Run a write cell then, in another process, its read cell on what it wrote."""
    root = work / f"{write}-{n}"
    written = cell(write, root, n, python=python)
    got = cell(read, root, n, python=python) if read else None
    shutil.rmtree(root, ignore_errors=True)
    return written, got


def by_rounds(repeat: int, one_round) -> dict[str, dict]:
    """Median per name of `repeat` calls of `one_round()` (a {name: result} dict).

    The disk's speed drifts over a run (small writes here measure anywhere from 0.03 to
    0.6 ms a file); taking every participant once per round puts them all under the same
    drift, so the ratios compare like with like.
    """
    got: dict[str, list[dict]] = {}
    for _ in range(repeat):
        for name, result in one_round().items():
            got.setdefault(name, []).append(result)
    return {name: median(results) for name, results in got.items()}


def rounds(who: list[str], write: str, read: str, n: int, repeat: int, work: Path,
           pythons: dict[str, str]) -> dict[str, dict]:
    """Each participant's `write` cell and then its `read` cell, interleaved by round."""
    def one_round() -> dict[str, dict]:
        out = {}
        for w in who:
            out[f"{w}_{write}"], out[f"{w}_{read}"] = pair(f"{w}_{write}", f"{w}_{read}", n,
                                                           work, pythons.get(w))
        return out

    return by_rounds(repeat, one_round)


SCALES = (200, 2000, 20000)


def scaling(repeat: int, work: Path) -> dict[str, dict]:
    """Per-task cost of the floor and stashflow at 200, 2,000 and 20,000 tasks.

    Each round runs every size, so a size is compared with 200 under the same disk;
    the floor's own ratios show how much of any slope is the file system's.
    """
    return by_rounds(repeat, lambda: {f"{w}_scale_{n}": pair(f"{w}_write", None, n, work)[0]
                                      for w in ("floor", "stashflow") for n in SCALES})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip the 200 MiB and scaling cells")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 (moto server) row")
    parser.add_argument("--prefect", metavar="VENV", type=Path,
                        help="add a Prefect column, run from the virtual environment VENV (made "
                             "from prefect-requirements.txt if it does not exist)")
    args = parser.parse_args()
    prefect = prefect_python(args.prefect) if args.prefect else None
    work = Path(tempfile.mkdtemp(prefix="stashflow-bench-"))
    r: dict[str, dict] = {}
    use_bytecode_cache(work, [sys.executable] + ([prefect] if prefect else []))
    try:
        who = ["floor", "joblib", "stashflow"] + (["prefect"] if prefect else [])
        pythons = {"prefect": prefect} if prefect else {}
        r.update(rounds(who, "write", "hit", 200, args.repeat, work, pythons))
        for module in who[1:]:
            r[f"{module}_import"] = median([cell("import_time", work, 0, {"BENCH_MODULE": module},
                                                 pythons.get(module)) for _ in range(args.repeat)])
        if not args.quick:
            r.update(rounds([*who, "stashflow_signed"], "big_write", "big_read", 1, args.repeat,
                            work, pythons))
            r.update(scaling(args.repeat, work))
            r.update(rounds(["arrow_floor", "stashflow_parquet"], "write", "read", 1, args.repeat,
                            work, {}))
            for n in (200, 100_000):
                root = work / f"fill-{n}"
                cell("stashflow_store_fill", root, n)
                r[f"store_hit_{n}"] = median([cell("stashflow_store_hit", root, n)
                                              for _ in range(args.repeat)])
                shutil.rmtree(root, ignore_errors=True)
        if not args.quick and not args.no_s3:
            # lazy: the server harness lives with the tests, outside every distribution
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
            from stashflow_test_servers import start_moto

            with start_moto(work) as server:
                env = {"BENCH_S3_ENDPOINT": server.url}
                r.update(by_rounds(args.repeat, lambda: {
                    c: cell(c, work / c, 1, env)
                    for c in ("s3_raw_roundtrip", "s3_stashflow_roundtrip")}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(r, args)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


def use_bytecode_cache(work: Path, pythons: list[str]) -> None:
    """Give every participant's process a bytecode cache, filled before anything is timed.

    With PYTHONDONTWRITEBYTECODE set (as on these machines) an editable install is
    compiled again in every process, and a PYTHONPYCACHEPREFIX without writing
    makes even the standard library compile each time: timings would measure the
    compiler. Each interpreter imports every participant once, untimed, first.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    for python in pythons:
        subprocess.run([python, "-c", "import importlib, sys\n"
                        "for m in ('stashflow', 'stashflow.engine', 'stashflow_local', 'joblib',"
                        " 'prefect', 'pickle', 'json', 'msgpack', 'xxhash'):\n"
                        "    try: importlib.import_module(m)\n"
                        "    except ImportError: pass\n"
                        "from stashflow.registry import get_registry\n"
                        "get_registry()"],
                       capture_output=True, check=False)


def prefect_python(venv: Path) -> str:
    """The interpreter of Prefect's own virtual environment, made on first use."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r",
                        str(HERE / "prefect-requirements.txt")], check=True)
    return str(python)


def print_table(r: dict, args) -> None:
    """Markdown table; the Prefect column and its ratio appear only with --prefect."""
    peers = ["floor", "joblib"] + (["prefect"] if "prefect_write" in r else [])
    names = {"floor": "floor", "joblib": "joblib.Memory", "prefect": "Prefect"}

    def row(label: str, key: str, fmt, measure: str | None) -> None:
        got = [r.get(f"{who}_{key}") for who in [*peers, "stashflow"]]
        cells = [fmt(x) if x else "-" for x in got]
        s = got[-1]
        ratios = [f"{s[measure] / x[measure]:.2f}x" if (measure and x and x[measure]) else ""
                  for x in got[:-1]]
        print(f"| {label} | {' | '.join(cells)} | {' | '.join(ratios)} |")

    def ms(x):
        return f"{x['per_op_ms']:.3f} ms"

    def big(x):
        return f"{x['seconds']:.2f} s, +{x['rss_growth']:.2f}x RSS"

    print(f"stashflow benchmarks, {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, median of {args.repeat} "
          "fresh processes")
    print(f"| per operation | {' | '.join(names[p] for p in peers)} | stashflow | "
          f"{' | '.join('/' + p for p in peers)} |")
    print("|---" * (2 * len(peers) + 2) + "|")
    row("persisted small task", "write", ms, "per_op_ms")
    row("cache hit (new process)", "hit", ms, "per_op_ms")
    if "floor_big_write" in r:
        row("200 MiB persist", "big_write", big, "seconds")
        row("200 MiB load", "big_read", big, "seconds")
        row("bytes read on a 200 MiB hit / payload", "big_read",
            lambda x: f"{x['bytes_read']:.3f}", None)
        row("bytes on disk / payload", "big_write", lambda x: f"{x['disk']:.6f}", None)
    row("import", "import", lambda x: f"{x['seconds']:.3f} s", "seconds")

    def line(label: str, floor: str, stash: str, ratio: str) -> None:
        """A row of its own shape: the floor column, stashflow and the /floor column."""
        blank = [""] * (len(peers) - 1)
        print(f"| {label} | {' | '.join([floor, *blank, stash, ratio, *blank])} |")

    if "stashflow_signed_big_read" in r:
        for what in ("write", "read"):
            x = r[f"stashflow_signed_big_{what}"]
            line(f"200 MiB {'persist' if what == 'write' else 'load'}, signed",
                 big(r[f"floor_big_{what}"]), big(x),
                 f"{x['seconds'] / r[f'floor_big_{what}']['seconds']:.2f}x")
    if "stashflow_parquet_read" in r:
        floor, sf = ((r[f"{w}_write"], r[f"{w}_read"]) for w in ("arrow_floor", "stashflow_parquet"))
        line("200 MiB DataFrame parquet write/load", f"pyarrow {big(floor[0])} / {big(floor[1])}",
             f"{big(sf[0])} / {big(sf[1])}",
             f"{sf[0]['seconds'] / floor[0]['seconds']:.2f}x / {sf[1]['seconds'] / floor[1]['seconds']:.2f}x")
    if "stashflow_scale_200" in r:
        for n in SCALES[1:]:
            f0, f1 = r["floor_scale_200"]["per_op_ms"], r[f"floor_scale_{n}"]["per_op_ms"]
            s0, s1 = r["stashflow_scale_200"]["per_op_ms"], r[f"stashflow_scale_{n}"]["per_op_ms"]
            line(f"persisted task, {n:,} vs 200 tasks", f"{f1:.3f} vs {f0:.3f} ms ({f1 / f0:.2f}x)",
                 f"{s1:.3f} vs {s0:.3f} ms", f"{s1 / s0:.2f}x of 200")
        a, b = r["store_hit_200"]["per_op_ms"], r["store_hit_100000"]["per_op_ms"]
        line("store hit, 100,000 records vs 200", "", f"{b:.3f} vs {a:.3f} ms", f"{b / a:.2f}x")
    if "s3_raw_roundtrip" in r:
        raw, sf = r["s3_raw_roundtrip"], r["s3_stashflow_roundtrip"]
        line("S3 (moto) 200 MiB round trip", f"raw s3fs {big(raw)}", big(sf),
             f"{sf['seconds'] / raw['seconds']:.2f}x raw")

if __name__ == "__main__":
    main()
