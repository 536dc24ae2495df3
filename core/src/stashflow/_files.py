"""Small file helpers shared by settings, blocks and locks (private)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def make_dirs(path: str | os.PathLike, mode: int) -> None:
    """`path` and its missing parents, each made with `mode` (existing ones are left alone).

    os.makedirs gives `mode` to the leaf only: the parents would get 0777 less the
    umask, which a umask of 0 leaves writable by everyone.
    """
    missing = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise


def make_private_dir(path: str | os.PathLike) -> None:
    """`path` and its missing parents, each made 0700."""
    make_dirs(path, 0o700)


def atomic_write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically with mode 0600 (temp file, fsync, rename).

    The temp file is created 0600 from the start, so a secret is never readable
    by others, not even for a moment.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
