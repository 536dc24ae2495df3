"""Type checkers see what a task or flow returns: `@task` keeps the function's parameters
and result (ParamSpec), awaiting an async task gives its result, the lazy names of
`stashflow` are visible, and a wrong argument is an error (mypy, as a user runs it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

USER_CODE = textwrap.dedent('''
    from stashflow import Task, flow, task


    @task
    def double(x: int) -> int:
        return 2 * x


    @task(retries=2, persist_result=True)
    def greet(name: str) -> str:
        return f"hello {name}"


    @task
    async def fetch(url: str) -> bytes:
        return b""


    @flow
    def main(n: int) -> list[int]:
        return [double(i) for i in range(n)]


    async def crawl() -> None:
        reveal_type(await fetch("u"))


    reveal_type(double(1))
    reveal_type(greet("a"))
    reveal_type(main(3))
    reveal_type(double.submit(1))
    typed: Task[[int], int] = double
    double("not an int")
''')


def test_mypy_sees_the_types_of_tasks_and_flows(tmp_path):
    pytest.importorskip("mypy")
    script = tmp_path / "user_code.py"
    script.write_text(USER_CODE)
    out = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"),
                          "--no-error-summary", str(script)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    revealed = [line.split("Revealed type is ")[1].strip('"')
                for line in out.stdout.splitlines() if "Revealed type is" in line]
    assert revealed == ["bytes", "int", "str", "list[int]",
                        "stashflow.engine.futures.TaskRunFuture"], out.stdout
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and "argument type \"str\"" in errors[0], out.stdout
