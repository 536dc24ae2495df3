"""The guarantees page's Python examples run as written."""

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "concepts" / "guarantees.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def test_the_guarantees_page_examples_run(capsys):
    blocks = BLOCK.findall(PAGE.read_text())
    assert len(blocks) == 2
    for number, code in enumerate(blocks, 1):
        exec(compile(code, f"guarantees.md#example-{number}", "exec"), {"__name__": f"docs_{number}"})
    out = capsys.readouterr().out
    assert "uses serializer 'pickle', which this store does not trust" in out
    assert "['runs/a']" in out
    assert "removed 1 records" in out


def test_the_page_is_in_the_site_navigation():
    mkdocs = (PAGE.parents[2] / "mkdocs.yml").read_text()
    assert "concepts/guarantees.md" in mkdocs
