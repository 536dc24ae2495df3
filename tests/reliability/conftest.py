"""The reliability tests share small helper modules (`_hostile`, `_concurrency_worker`).

This directory has no __init__.py and pytest imports test modules by path, so it
is put on sys.path here for `from _hostile import ...` to work.
"""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
