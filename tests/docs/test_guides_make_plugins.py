"""A plugin written only from the guides, outside this repository, passes the kit.

The code blocks of each "Write a ..." guide become one module of a throw-away
distribution (its test blocks become its test file); the distribution is
made importable with its `stashflow` entry points, and its tests run in a
fresh pytest process in a temp directory.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

GUIDES = Path(__file__).resolve().parents[2] / "docs" / "guides"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
MODULES = {
    "guide_serializer": "write-serializer.md",
    "guide_storage": "write-storage-backend.md",
    "guide_policy": "write-cache-policy.md",
}


def test_plugins_written_from_the_guides_pass_the_kit(tmp_path):
    tests = []
    for module, page in MODULES.items():
        blocks = BLOCK.findall((GUIDES / page).read_text())
        code = [b for b in blocks if "from stashflow.testing import" not in b]
        kit = [b for b in blocks if "from stashflow.testing import" in b]
        assert code and kit, f"{page} has no plugin code or no kit test"
        (tmp_path / f"{module}.py").write_text("\n\n".join(code))
        tests.append(f"from {module} import *  # noqa\n\n" + "\n\n".join(kit))
    dist = tmp_path / "guide_plugins-0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: guide-plugins\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text(
        "[stashflow]\n" + "".join(f"{m.replace('_', '-')} = {m}\n" for m in MODULES))
    run = tmp_path / "tests"
    run.mkdir()
    for module, text in zip(MODULES, tests, strict=True):
        (run / f"test_{module}.py").write_text(text)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "STASHFLOW_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(run)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]
    counts = re.search(r"(\d+) passed", out.stdout)
    assert counts and int(counts.group(1)) >= 40, out.stdout[-1000:]
    assert "skipped" not in out.stdout
