"""Peak memory of writing and reading a 200 MiB value through ResultStore (pickle, local).

Each direction runs in its own fresh process and reads VmHWM, the kernel's peak RSS
of that process (ru_maxrss would inherit the parent's peak across fork and exec);
growth is measured from a baseline taken once the payload (for a write) exists.
"""

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

PAYLOAD = 200 * 1024 * 1024

SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    from stashflow import ResultStore

    def peak():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))

    mode, root, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    signing_key = sys.argv[4] if len(sys.argv) > 4 else None
    store = ResultStore(root, "pickle", signing_key=signing_key)
    store.read_metadata  # import everything before the baseline
    if mode == "write":
        payload = os.urandom(size)
        base = peak()
        start = time.perf_counter()
        store.write("big", payload)
    else:
        base = peak()
        start = time.perf_counter()
        payload = store.read("big")
        assert len(payload) == size and isinstance(payload, bytes)
    seconds = time.perf_counter() - start
    print(json.dumps({"growth": peak() - base, "seconds": seconds,
                      "file": os.path.getsize(os.path.join(root, "big"))}))
""")


def _run(*args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", SCRIPT, *map(str, args)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("signing_key", [None, "k"], ids=["unsigned", "signed"])
def test_200_mib_write_and_read_stay_within_1_2x_the_payload(tmp_path, signing_key):
    extra = [signing_key] if signing_key else []
    wrote = _run("write", tmp_path, PAYLOAD, *extra)
    read = _run("read", tmp_path, PAYLOAD, *extra)
    print(f"\nwrite: +{wrote['growth'] / PAYLOAD:.3f}x payload in {wrote['seconds']:.2f}s; "
          f"read: +{read['growth'] / PAYLOAD:.3f}x payload in {read['seconds']:.2f}s; "
          f"file overhead {wrote['file'] - PAYLOAD} bytes")
    assert wrote["growth"] <= 1.2 * PAYLOAD
    assert read["growth"] <= 1.2 * PAYLOAD
    assert PAYLOAD < wrote["file"] < PAYLOAD + 1024
    assert (tmp_path / "big").stat().st_size == wrote["file"]
