"""The Python examples of the results and caching pages run as written."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "concepts"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


@pytest.mark.parametrize("page", ["results.md", "caching.md"])
def test_page_examples_run(page):
    blocks = BLOCK.findall((DOCS / page).read_text())
    assert blocks
    for number, code in enumerate(blocks, 1):
        exec(compile(code, f"{page}#example-{number}", "exec"), {"__name__": f"docs_{number}"})
