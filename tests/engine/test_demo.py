"""`stashflow demo`: the README's first command runs a flow twice, the second from cache."""

import os
import subprocess
import sys


def test_stashflow_demo_second_run_is_served_from_cache(storage_root):
    proc = subprocess.run([sys.executable, "-m", "stashflow", "demo"], capture_output=True,
                          text=True, env=dict(os.environ), timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    first, second = out.split("Run 2")
    assert "9 task runs, 0 from cache" in first
    assert "9 task runs, 9 from cache" in second
    assert second.count(" cached ") == 9 and " ran " not in second
    assert str(storage_root) in out
    records = sorted(p.name for p in (storage_root / "stashflow-demo").iterdir())
    assert "report.json" in records and "temperatures-Oslo.pickle" in records
    assert len(records) == 9


def test_demo_starts_fresh_unless_kept(storage_root):
    from click.testing import CliRunner
    from stashflow.cli import main

    for args, expected in ((["demo"], "0 from cache"), (["demo", "--keep"], "9 task runs, 9 from cache")):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert expected in result.output.split("Run 2")[0]
