"""A 200 MiB value through ResultStore on S3, peak memory measured in fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

MiB = 1024 * 1024
SIZE = 200 * MiB

# Each phase runs in its own process and reads VmHWM, the kernel's peak RSS of the
# process's address space (unlike ru_maxrss, it does not inherit the parent's peak).
# The baseline is taken after imports and a small warm-up round trip and, for the
# write, after the value exists: growth is what storing or loading the value costs.
WRITE = """
    import json, os, sys, time, xxhash
    from stashflow import ResultStore
    def peak_rss():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    store = ResultStore(sys.argv[1])
    store.write("warm-up", b"x")
    value = os.urandom({size})
    base = peak_rss()
    t = time.perf_counter()
    meta = store.write("big", value)
    seconds = time.perf_counter() - t
    peak = peak_rss()
    print(json.dumps({{"growth": peak - base, "seconds": seconds, "size": meta.size,
                      "digest": xxhash.xxh3_64_hexdigest(value)}}))
"""
READ = """
    import json, sys, time, xxhash
    from stashflow import ResultStore
    def peak_rss():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    store = ResultStore(sys.argv[1])
    store.read("warm-up")
    base = peak_rss()
    t = time.perf_counter()
    value = store.read("big")
    seconds = time.perf_counter() - t
    peak = peak_rss()
    print(json.dumps({{"growth": peak - base, "seconds": seconds, "len": len(value),
                      "digest": xxhash.xxh3_64_hexdigest(value)}}))
"""


def _phase(code: str, url: str) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code).format(size=SIZE), url],
                         capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_200_mib_round_trip_stays_under_two_payloads_of_memory(bucket, raw):
    url = f"s3://{bucket}/large"
    wrote = _phase(WRITE, url)
    head = raw.head_object(Bucket=bucket, Key="large/big")
    assert head["ETag"].strip('"').endswith("-26")  # 25 parts of 8 MiB + the rest
    read = _phase(READ, url)
    assert (read["len"], read["digest"]) == (SIZE, wrote["digest"])
    print(f"\n200 MiB via S3: write {wrote['seconds']:.1f} s, peak RSS growth "
          f"{wrote['growth'] / MiB:.0f} MiB; read {read['seconds']:.1f} s, peak RSS growth "
          f"{read['growth'] / MiB:.0f} MiB (includes the value read)")
    assert wrote["growth"] <= 2 * SIZE
    assert read["growth"] <= 2 * SIZE
