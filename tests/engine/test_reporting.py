"""The run log: a line per task run (state, duration, record), per retry and per flow run
(a summary); on stderr when the program configures no logging, through its logging
when it does; STASHFLOW_LOGGING_LEVEL; log_prints."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap

from stashflow import flow, task

SCRIPT = textwrap.dedent("""
    from stashflow import flow, task

    @task(persist_result=True, cache_policy="inputs")
    def square(x):
        return x * x

    @task
    def broken():
        raise KeyError("nope")

    @flow(log_prints=True)
    def report():
        print("starting the report")
        values = [square(i) for i in range(3)]
        broken(return_state=True)
        return values

    print(report())
    print(report())
""")


def run(tmp_path, env: dict | None = None, source: str = SCRIPT) -> subprocess.CompletedProcess:
    script = tmp_path / "report.py"
    script.write_text(source)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, cwd=tmp_path)


def test_a_script_prints_a_line_per_task_run_and_a_summary_per_flow_run(tmp_path):
    out = run(tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[0, 1, 4]", "[0, 1, 4]"]  # print() went to the log
    lines = out.stderr.splitlines()
    completed = [line for line in lines if re.search(r"\| task_runs \| square-\w+: Completed in", line)]
    cached = [line for line in lines if re.search(r"\| task_runs \| square-\w+: Cached in", line)]
    assert len(completed) == 3 and len(cached) == 3
    assert all("(file://" in line and "/storage/" in line for line in completed + cached)
    failed = [line for line in lines if "| ERROR   | task_runs | broken-" in line]
    assert len(failed) == 2 and "Failed in" in failed[0] and "KeyError: 'nope'" in failed[0]
    summaries = [line for line in lines if "| flow_runs |" in line and "task runs" in line]
    assert len(summaries) == 2
    assert "Completed; 4 task runs: 3 completed, 1 failed in " in summaries[0]
    assert "Completed; 4 task runs: 3 cached, 1 failed in " in summaries[1]
    assert sum("| flow_runs | report-" in line and line.endswith(": starting the report")
               for line in lines) == 2


def test_the_logging_level_setting_keeps_failures_only(tmp_path):
    out = run(tmp_path, {"STASHFLOW_LOGGING_LEVEL": "warning"})
    assert out.returncode == 0, out.stderr
    assert "INFO" not in out.stderr and out.stderr.count("| ERROR   | task_runs |") == 2
    # with the log off, log_prints text reaches stdout again
    assert out.stdout.splitlines()[0] == "starting the report"


def test_a_program_that_configures_logging_gets_the_records_there_and_no_console(tmp_path):
    source = "import logging, sys\nlogging.basicConfig(stream=sys.stdout, level=logging.INFO, " \
             "format='%(name)s %(message)s')\n" + SCRIPT
    out = run(tmp_path, source=source)
    assert out.returncode == 0, out.stderr
    assert "| task_runs |" not in out.stderr  # no console handler of ours
    assert re.search(r"^stashflow.task_runs square-\w+: Cached in", out.stdout, re.M)


def test_retries_and_failures_are_logged_with_the_error(caplog):
    attempts = []

    @task(retries=2, retry_delay_seconds=0)
    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError(f"attempt {len(attempts)}")
        return "ok"

    @flow
    def f():
        return flaky()

    with caplog.at_level(logging.INFO, logger="stashflow"):
        assert f() == "ok"
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("stashflow.")]
    retries = [m for m in messages if "Retrying" in m]
    assert len(retries) == 2 and "(retry 1 of 2) after ConnectionError: attempt 1" in retries[0]
    assert any(re.match(r"flaky-\w+: Completed in [\d.]+ ms$", m) for m in messages)
    assert re.search(r"Completed; 1 task run: 1 completed in", messages[-1])


def test_nothing_is_formatted_when_the_level_is_above_info(caplog, monkeypatch):
    formatted = []
    monkeypatch.setattr("stashflow.engine.reporting._seconds",
                        lambda d: formatted.append(d) or "x")

    @task
    def one():
        return 1

    with caplog.at_level(logging.WARNING, logger="stashflow"):
        one()
    assert formatted == [] and caplog.records == []
