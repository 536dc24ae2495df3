"""One process of the concurrency test: threads writing and reading the same keys.

Usage: python _concurrency_worker.py ROOT WORKER_ID SECONDS THREADS
Prints one JSON object: what it wrote, what it read, and every problem seen.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time

from stashflow.results import ResultStore

KEYS = [f"shared/k{i:02d}" for i in range(50)]
SIZES = (100, 70_000, 1_500_000)  # one write; header then payload; spilled and streamed


def payload(key: str, writer: str, seq: int, size: int) -> bytes:
    return random.Random(f"{key}|{writer}|{seq}").randbytes(size)


def value(key: str, writer: str, seq: int, size: int) -> dict:
    return {"key": key, "writer": writer, "seq": seq, "size": size,
            "data": payload(key, writer, seq, size)}


def check(key: str, got: object) -> str | None:
    """None if `got` is exactly a value written for `key`, else what is wrong."""
    if not isinstance(got, dict) or set(got) != {"key", "writer", "seq", "size", "data"}:
        return f"{key}: not a value of this test: {type(got).__name__}"
    if got["key"] != key:
        return f"{key}: holds the value of {got['key']}"
    if got["data"] != payload(key, got["writer"], got["seq"], got["size"]):
        return f"{key}: the bytes of {got['writer']}#{got['seq']} are not what was written"
    return None


def main() -> None:
    root, worker, seconds, threads = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    store = ResultStore(root)
    deadline = time.monotonic() + seconds
    written: list[list] = []
    read: list[list] = []
    problems: list[str] = []
    lock = threading.Lock()

    def run(tid: int) -> None:
        rng = random.Random(f"{worker}-{tid}")
        name = f"{worker}.{tid}"
        seq = 0
        while time.monotonic() < deadline:
            key = rng.choice(KEYS)
            try:
                if rng.random() < 0.5:
                    seq += 1
                    store.write(key, value(key, name, seq, rng.choice(SIZES)))
                    with lock:
                        written.append([key, name, seq])
                else:
                    got = store.read(key)
                    problem = check(key, got)
                    with lock:
                        if problem:
                            problems.append(problem)
                        else:
                            read.append([key, got["writer"], got["seq"]])
            except Exception as exc:
                with lock:
                    problems.append(f"{key}: {type(exc).__name__}: {exc}")

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    json.dump({"written": written, "read": read, "problems": problems}, sys.stdout)


if __name__ == "__main__":
    main()
