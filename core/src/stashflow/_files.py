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


def write_private(path: Path, data: bytes, *, replace: bool = True) -> bool:
    """Write `data` to `path` atomically, with mode 0600 from the first byte.

    A temp file beside it is written and synced, then renamed over `path`
    (`replace=True`) or hard-linked to it (`replace=False`: only if `path` is
    absent; False when it was there). A secret is never readable by others, not
    even for a moment, and a reader never sees half a file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)
