"""The documentation site builds with `mkdocs build --strict`: no broken link, no page left out."""

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_mkdocs_build_strict_is_clean(tmp_path):
    site = tmp_path / "site"
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                          str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (
        "mkdocs build --strict failed (is mkdocs installed? pip install -r requirements-test.txt):\n"
        + out.stderr[-4000:]
    )
    assert "WARNING" not in out.stderr, out.stderr
    for page in ("quickstart", "guides/write-storage-backend", "reference/hooks", "reference/cli"):
        assert (site / page / "index.html").is_file(), page


def _nav_pages(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [p for value in node.values() for p in _nav_pages(value)]
    return [p for item in node for p in _nav_pages(item)]


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = _nav_pages(config["nav"])
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert sorted(set(nav) - pages) == [], "nav entries without a page"
    assert sorted(pages - set(nav)) == [], "pages missing from the nav in mkdocs.yml"
    required = {"quickstart.md", "concepts/results.md", "concepts/storage.md", "concepts/serializers.md",
                "concepts/caching.md", "concepts/transactions.md", "concepts/blocks.md",
                "concepts/settings.md", "guides/install-backend.md", "guides/write-serializer.md",
                "guides/write-storage-backend.md", "guides/write-cache-policy.md",
                "guides/embed-result-store.md", "guides/dask.md", "reference/hooks.md",
                "reference/settings.md", "reference/cli.md", "reference/record-format.md"}
    assert required <= set(nav)
