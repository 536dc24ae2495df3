"""Every hook is documented with its signature, and the docs name no hook that does not exist."""

import inspect
import re
from pathlib import Path

import pytest
from stashflow import hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs"
HOOKS = {
    name: f"{name}({', '.join(inspect.signature(fn).parameters)})"
    for name, fn in vars(hookspecs).items()
    if callable(fn) and hasattr(fn, "stashflow_spec")
}


def _docs_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.rglob("*.md")))


def test_hookspecs_are_found():
    assert {"register_storage_types", "register_serializers", "register_cache_policies"} <= set(HOOKS)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_each_hook_is_documented_with_its_signature(name):
    assert f"`{HOOKS[name]}`" in _docs_text(), f"document {HOOKS[name]} under docs/"


def test_the_docs_name_only_real_hooks():
    mentioned = set(re.findall(r"`(register_[a-z_]+)\(", _docs_text()))
    assert mentioned <= set(HOOKS), f"documented but not hooks: {sorted(mentioned - set(HOOKS))}"
