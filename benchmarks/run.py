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


def cell(name: str, root: Path, n: int, env: dict | None = None) -> dict:
    """Run one cell in a new Python process and return what it reported."""
    out = subprocess.run([sys.executable, str(HERE / "cells.py"), name, str(root), str(n)],
                         capture_output=True, text=True, env={**os.environ, **(env or {})},
                         timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"cell {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median(results: list[dict]) -> dict:
    keys = results[0].keys()
    return {k: statistics.median(r[k] for r in results) for k in keys}


def pair(write: str, read: str | None, n: int, repeat: int, work: Path) -> tuple[dict, dict | None]:
    """Run a write cell then (in another process) its read cell, `repeat` times."""
    writes, reads = [], []
    for i in range(repeat):
        root = work / f"{write}-{n}-{i}"
        writes.append(cell(write, root, n))
        if read:
            reads.append(cell(read, root, n))
        shutil.rmtree(root, ignore_errors=True)
    return median(writes), (median(reads) if reads else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip the 200 MiB and scaling cells")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 (moto server) row")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stashflow-bench-"))
    r: dict[str, dict] = {}
    try:
        for who in ("floor", "joblib", "stashflow"):
            r[f"{who}_write"], r[f"{who}_hit"] = pair(f"{who}_write", f"{who}_hit", 200,
                                                      args.repeat, work)
        for module in ("joblib", "stashflow"):
            r[f"{module}_import"] = median([cell("import_time", work, 0, {"BENCH_MODULE": module})
                                            for _ in range(args.repeat)])
        if not args.quick:
            for who in ("floor", "joblib", "stashflow"):
                r[f"{who}_big_write"], r[f"{who}_big_read"] = pair(
                    f"{who}_big_write", f"{who}_big_read", 1, args.repeat, work)
            for n in (2000, 20000):
                r[f"stashflow_write_{n}"], _ = pair("stashflow_write", None, n, 1, work)
            for n in (200, 100_000):
                root = work / f"fill-{n}"
                cell("stashflow_store_fill", root, n)
                r[f"store_hit_{n}"] = median([cell("stashflow_store_hit", root, n)
                                              for _ in range(args.repeat)])
                shutil.rmtree(root, ignore_errors=True)
        if not args.quick and not args.no_s3:
            from stashflow._servers import start_moto

            with start_moto(work) as endpoint:
                env = {"BENCH_S3_ENDPOINT": endpoint}
                for who in ("s3_raw_roundtrip", "s3_stashflow_roundtrip"):
                    r[who] = median([cell(who, work / who, 1, env) for _ in range(args.repeat)])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(r, args)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


def print_table(r: dict, args) -> None:
    def ms(x):
        return f"{x['per_op_ms']:.3f} ms"

    print(f"stashflow benchmarks, {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, median of {args.repeat} "
          "fresh processes")
    print("| per operation | floor | joblib.Memory | stashflow | /floor | /joblib |")
    print("|---|---|---|---|---|---|")
    for label, key in (("persisted small task", "write"), ("cache hit (new process)", "hit")):
        f, j, s = r[f"floor_{key}"], r[f"joblib_{key}"], r[f"stashflow_{key}"]
        print(f"| {label} | {ms(f)} | {ms(j)} | {ms(s)} | {s['per_op_ms'] / f['per_op_ms']:.2f}x "
              f"| {s['per_op_ms'] / j['per_op_ms']:.2f}x |")
    if "floor_big_write" in r:
        for label, key in (("200 MiB persist", "big_write"), ("200 MiB load", "big_read")):
            f, j, s = r[f"floor_{key}"], r[f"joblib_{key}"], r[f"stashflow_{key}"]
            cells = [f"{x['seconds']:.2f} s, +{x['rss_growth']:.2f}x RSS" for x in (f, j, s)]
            print(f"| {label} | {' | '.join(cells)} | {s['seconds'] / f['seconds']:.2f}x "
                  f"| {s['seconds'] / j['seconds']:.2f}x |")
        f, j, s = (r[f"{w}_big_read"]["bytes_read"] for w in ("floor", "joblib", "stashflow"))
        print(f"| bytes read on a 200 MiB hit / payload | {f:.3f} | {j:.3f} | {s:.3f} | | |")
        f, j, s = (r[f"{w}_big_write"]["disk"] for w in ("floor", "joblib", "stashflow"))
        print(f"| bytes on disk / payload | {f:.4f} | {j:.4f} | {s:.6f} | | |")
    ji, si = r["joblib_import"]["seconds"], r["stashflow_import"]["seconds"]
    print(f"| import | - | {ji:.3f} s | {si:.3f} s | | {si / ji:.2f}x |")
    if "stashflow_write_2000" in r:
        base = r["stashflow_write"]["per_op_ms"]
        for n in (2000, 20000):
            x = r[f"stashflow_write_{n}"]["per_op_ms"]
            print(f"| persisted task, {n} tasks | | | {x:.3f} ms | {x / base:.2f}x of 200 | |")
        a, b = r["store_hit_200"]["per_op_ms"], r["store_hit_100000"]["per_op_ms"]
        print(f"| store hit, 100,000 records vs 200 | | | {b:.3f} vs {a:.3f} ms | {b / a:.2f}x | |")
    if "s3_raw_roundtrip" in r:
        raw, sf = r["s3_raw_roundtrip"], r["s3_stashflow_roundtrip"]
        print(f"| S3 (moto) 200 MiB round trip | raw s3fs {raw['seconds']:.2f} s, "
              f"+{raw['rss_growth']:.2f}x RSS | | {sf['seconds']:.2f} s, +{sf['rss_growth']:.2f}x RSS "
              f"| {sf['seconds'] / raw['seconds']:.2f}x raw | |")


if __name__ == "__main__":
    main()
