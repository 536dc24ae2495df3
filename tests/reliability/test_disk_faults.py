"""A write that fails part-way (the file-size limit hit: EFBIG) is a clear error and harms nothing.

The child process lowers RLIMIT_FSIZE and ignores SIGXFSZ, so the kernel fails
the write that crosses the limit with EFBIG, as a full disk fails one with
ENOSPC. The error must be a StorageError naming the backend and the key, the
record written before must still load, and no partial or temp file may remain.
"""

from __future__ import annotations

import json
import os
import resource
import signal

import pytest
from stashflow.maintenance import temp_keys
from stashflow.results import ResultStore

LIMIT = 4 * 1024 * 1024
BIG = 12 * 1024 * 1024


def _in_child(fn) -> dict:
    """Run `fn` in a forked child under the file-size limit; what it raised, as a dict."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_fd)
        out: dict = {"raised": None}
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))
            fn()
        except BaseException as exc:
            out = {"raised": type(exc).__name__, "message": str(exc),
                   "mro": [c.__name__ for c in type(exc).__mro__],
                   "errno": getattr(exc, "errno", None)}
        os.write(write_fd, json.dumps(out).encode())
        os._exit(0)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    return json.loads(b"".join(chunks))


def _files(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


WRITES = {
    # a streaming serializer writing through open_write
    "pickle-write": ("pickle", lambda store, key: store.write(key, os.urandom(BIG))),
    # a bytes serializer: header and payload in two writes
    "json-write": ("json", lambda store, key: store.write(key, "x" * BIG)),
    # create-if-absent of a new key: staged, then linked
    "pickle-create": ("pickle", lambda store, key: store.create(key + "-new", os.urandom(BIG))),
}


@pytest.mark.parametrize("case", sorted(WRITES))
def test_a_write_failing_part_way_raises_storage_error_and_keeps_the_old_record(tmp_path, case):
    serializer, write = WRITES[case]
    root = tmp_path / "results"
    store = ResultStore(root, serializer=serializer)
    key = "runs/precious"
    store.write(key, "the previous value")
    before = (root / key).read_bytes()

    got = _in_child(lambda: write(ResultStore(root, serializer=serializer), key))

    assert got["raised"] == "StorageError", got
    assert "StashflowError" in got["mro"] and "OSError" in got["mro"]
    assert got["errno"] == 27  # EFBIG: the kernel refused the write, it was not simulated
    assert "local-file-system" in got["message"]
    assert key in got["message"]
    assert (root / key).read_bytes() == before
    assert store.read(key) == "the previous value"
    assert _files(root) == [key]  # no partial record, no temp file
    assert list(temp_keys(store.storage)) == []


def test_a_small_write_under_the_limit_still_succeeds_in_the_limited_child(tmp_path):
    root = tmp_path / "results"
    got = _in_child(lambda: ResultStore(root).write("small", b"x" * 1000))
    assert got["raised"] is None
    assert ResultStore(root).read("small") == b"x" * 1000
