"""The Python examples of the docs pages run, in order, one namespace per page.

Pages whose examples need something special are run by tests next to what they
need (listed in ELSEWHERE, and checked to exist). A block that must not run -
it needs a real cloud account, say - is preceded by the line
`<!-- docs-test: skip -->` (a reason may follow "skip"). A block whose first line is `# name.py` is a module
file: it runs as module `name`, which later blocks can import or use by name.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SKIP = "<!-- docs-test: skip -->"
_SKIP = re.compile(r"<!-- docs-test: skip\b.*-->")
MODULE = re.compile(r"# ([A-Za-z_]\w*)\.py\n")
BLOCK = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)```", re.S)

# page -> the test file that runs its examples
ELSEWHERE = {
    "concepts/results.md": "tests/engine/test_docs_examples.py",
    "concepts/caching.md": "tests/engine/test_docs_examples.py",
    "concepts/transactions.md": "core/tests/test_transactions.py",
    "concepts/guarantees.md": "tests/reliability/test_guarantees_doc.py",
    "backends/s3.md": "tests/cloud/test_docs.py",
    "backends/gcs.md": "tests/cloud/test_docs.py",
    "backends/azure.md": "tests/cloud/test_docs.py",
    "guides/dask.md": "plugins/dask/tests",
}


def blocks(text: str) -> list[str]:
    """The page's ```python blocks, without those marked to skip."""
    return [m["code"] for m in BLOCK.finditer("\n" + text) if not _SKIP.fullmatch(m["before"].strip())]


def pages() -> list[str]:
    return sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")
                  if str(p.relative_to(DOCS)) not in ELSEWHERE and blocks(p.read_text()))


@pytest.mark.parametrize("page", pages())
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever an example writes lands here
    namespace: dict = {"__name__": f"docs_{Path(page).stem}"}
    for number, code in enumerate(blocks((DOCS / page).read_text()), 1):
        # dont_inherit: run as a user's script would, without this file's __future__ imports
        compiled = compile(code, f"docs/{page} (example {number})", "exec", dont_inherit=True)
        module = MODULE.match(code)
        if module:
            name = module.group(1)
            namespace[name] = types.ModuleType(name)
            monkeypatch.setitem(sys.modules, name, namespace[name])
            exec(compiled, vars(namespace[name]))
        else:
            exec(compiled, namespace)


def test_pages_run_elsewhere_have_their_tests():
    for page, test in ELSEWHERE.items():
        if (DOCS / page).exists():
            target = ROOT / test
            assert target.exists(), f"{page} says its examples run in {test}, which is missing"
            text = "".join(p.read_text() for p in ([target] if target.is_file() else target.rglob("*.py")))
            assert Path(page).name in text, f"{test} does not run {page}"


def test_the_skip_marker_skips_only_the_next_block():
    text = "intro\n```python\na = 1\n```\n" + SKIP + "\n```python\nb = 2\n```\n```python\nc = 3\n```\n"
    assert blocks(text) == ["a = 1\n", "c = 3\n"]
    with_reason = "<!-- docs-test: skip (needs S3) -->\n```python\nd = 4\n```\n"
    assert blocks(with_reason) == []
