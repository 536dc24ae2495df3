"""The reference pages match the code: hooks, settings and CLI commands.

Each checker returns the problems it finds in a page's text, so the same
checker is run on the real page (no problems) and on doctored copies (the
problem is found): a drift test that cannot fail proves nothing.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
from pathlib import Path

import pytest
from stashflow import hookspecs, settings

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"
SOURCES = [ROOT / "core" / "src", *sorted((ROOT / "plugins").glob("*/src"))]

_spec = importlib.util.spec_from_file_location("cli_reference", Path(__file__).with_name("cli_reference.py"))
cli_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cli_reference)


def _sections(text: str, level: str) -> dict[str, str]:
    """Heading text -> the text under it, for headings of `level` ("##")."""
    parts = re.split(rf"^{level} ", text, flags=re.M)
    return {p.split("\n", 1)[0].strip().strip("`"): p.split("\n", 1)[1] if "\n" in p else ""
            for p in parts[1:]}


# -- hooks ------------------------------------------------------------------------------


def hook_specs() -> dict[str, object]:
    return {name: fn for name, fn in vars(hookspecs).items()
            if callable(fn) and hasattr(fn, "stashflow_spec")}


def hook_problems(text: str) -> list[str]:
    sections = _sections(text, "##")
    problems = []
    for name, fn in hook_specs().items():
        section = sections.get(name)
        if section is None:
            problems.append(f"hook {name} has no '## {name}' section")
            continue
        signature = f"`{name}{inspect.signature(fn)}`"
        if signature not in section.splitlines():
            problems.append(f"hook {name}: the section does not show its signature {signature}")
        doc = inspect.getdoc(fn)
        if f"> {doc}" not in section:
            problems.append(f"hook {name}: the section does not quote its docstring {doc!r}")
        for flag in ("firstresult", "historic"):
            if fn.stashflow_spec.get(flag) and flag not in section:
                problems.append(f"hook {name} is {flag} but the section does not say so")
    for heading in sections:
        if heading.startswith("register_") and heading not in hook_specs():
            problems.append(f"'## {heading}' documents a hook that does not exist")
    return problems


# -- settings ---------------------------------------------------------------------------


def _documented_default(setting: settings.Setting) -> str:
    old = os.environ.get("STASHFLOW_HOME")
    os.environ["STASHFLOW_HOME"] = "$STASHFLOW_HOME"  # defaults that derive from it, symbolically
    try:
        value = setting.default()
    finally:
        if old is None:
            del os.environ["STASHFLOW_HOME"]
        else:
            os.environ["STASHFLOW_HOME"] = old
    return f"`{value}`" if value else "unset"


def setting_problems(text: str) -> list[str]:
    sections = _sections(text, "##")
    problems = []
    for name, setting in settings.SETTINGS.items():
        section = sections.get(name)
        if section is None:
            problems.append(f"setting {name} has no '## {name}' section")
            continue
        profile = "yes" if setting.in_profile else "no (environment only)"
        row = f"| {_documented_default(setting)} | {profile} | {'yes' if setting.secret else 'no'} |"
        if row not in section.splitlines():
            problems.append(f"setting {name}: expected the row {row!r} (default, in a profile, secret)")
        if setting.help not in section:
            problems.append(f"setting {name}: the section does not give its help text {setting.help!r}")
    for heading in sections:
        if heading.startswith("STASHFLOW_") and heading not in settings.SETTINGS:
            problems.append(f"'## {heading}' documents a setting that does not exist")
    for variable in environment_variables():
        if variable not in text:
            problems.append(f"the code reads {variable}, which the page does not mention")
    return problems


def environment_variables() -> set[str]:
    """Every STASHFLOW_* name in the source of core and the plugins."""
    found: set[str] = set()
    for src in SOURCES:
        for path in src.rglob("*.py"):
            found.update(re.findall(r"\bSTASHFLOW_[A-Z_]*[A-Z]\b", path.read_text(encoding="utf-8")))
    return found


# -- the tests --------------------------------------------------------------------------


def test_every_hook_spec_is_documented_with_its_signature_and_docstring():
    assert hook_specs(), "no hook specs found"
    assert hook_problems((REFERENCE / "hooks.md").read_text()) == []


def test_every_setting_is_documented_with_its_default_and_help():
    assert settings.SETTINGS
    assert setting_problems((REFERENCE / "settings.md").read_text()) == []


def test_every_cli_command_and_option_is_documented():
    text = (REFERENCE / "cli.md").read_text()
    assert cli_reference.problems(text) == [], (
        "docs/reference/cli.md is out of step with the commands: run "
        "`python tests/docs/cli_reference.py` and review the diff"
    )


def test_the_cli_reference_covers_the_whole_command_tree():
    paths = set(cli_reference.generate())
    assert {"stashflow", "stashflow config set", "stashflow config view", "stashflow block create",
            "stashflow plugins"} <= paths


# -- the checkers find drift: doctored copies of the pages --------------------------------


def _without_section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = text.find("\n## ", start + 1)
    return text[:start] + (text[following + 1:] if following >= 0 else "")


def test_a_removed_hook_section_is_found():
    text = (REFERENCE / "hooks.md").read_text()
    doctored = _without_section(text, "## register_serializers\n")
    assert any("register_serializers has no" in p for p in hook_problems(doctored))


def test_a_drifted_hook_signature_is_found():
    text = (REFERENCE / "hooks.md").read_text()
    doctored = text.replace("`register_cache_policies(register)`", "`register_cache_policies(add)`")
    assert any("register_cache_policies" in p and "signature" in p for p in hook_problems(doctored))


def test_a_changed_hook_docstring_is_found():
    text = (REFERENCE / "hooks.md").read_text()
    doctored = text.replace("> Register storage backends:", "> Register storages:")
    assert any("docstring" in p for p in hook_problems(doctored))


def test_a_documented_hook_that_does_not_exist_is_found():
    text = (REFERENCE / "hooks.md").read_text() + "\n## register_widgets\n\n`register_widgets(register)`\n"
    assert any("register_widgets" in p for p in hook_problems(text))


def test_a_removed_or_wrong_setting_is_found():
    text = (REFERENCE / "settings.md").read_text()
    doctored = _without_section(text, "## STASHFLOW_TASKS_REFRESH_CACHE\n")
    assert any("STASHFLOW_TASKS_REFRESH_CACHE has no" in p for p in setting_problems(doctored))
    wrong_default = text.replace("| `pickle` | yes | no |", "| `json` | yes | no |")
    assert any("STASHFLOW_RESULTS_DEFAULT_SERIALIZER" in p for p in setting_problems(wrong_default))
    no_trace = text.replace("STASHFLOW_TRACE_PLUGINS", "STASHFLOW_TRACE")
    assert any("STASHFLOW_TRACE_PLUGINS" in p for p in setting_problems(no_trace))


def test_a_removed_cli_option_or_command_is_found():
    text = (REFERENCE / "cli.md").read_text()
    no_option = text.replace("| `--show-sources` | Say where each value came from. |\n", "")
    assert any("stashflow config view" in p for p in cli_reference.problems(no_option))
    start = text.index("### `stashflow block ls`")
    no_command = text[:start] + text[text.index("### ", start + 4):]
    assert "command `stashflow block ls` is not documented" in cli_reference.problems(no_command)


def test_a_drifted_cli_usage_is_found():
    text = (REFERENCE / "cli.md").read_text()
    doctored = text.replace("stashflow block create [OPTIONS] TYPE_SLUG NAME",
                            "stashflow block create [OPTIONS] TYPE NAME")
    assert any("stashflow block create" in p for p in cli_reference.problems(doctored))


@pytest.mark.parametrize("page", ["hooks.md", "settings.md", "cli.md"])
def test_reference_pages_are_in_the_site_nav(page):
    assert f"reference/{page}" in (ROOT / "mkdocs.yml").read_text()


def test_every_kit_test_and_knob_is_in_the_testing_reference():
    from stashflow.testing import CachePolicyTests, SerializerTests, StorageBackendTests

    text = (REFERENCE / "testing.md").read_text()
    for suite in (StorageBackendTests, SerializerTests, CachePolicyTests):
        assert f"## {suite.__name__}" in text
        names = [n for n in vars(suite) if n.startswith("test_")]
        names += [n for n, v in vars(suite).items() if isinstance(v, int | tuple | bool)
                  and not n.startswith("_")]
        missing = [n for n in names if f"`{n}`" not in text]
        assert not missing, f"{suite.__name__}: document {missing} in docs/reference/testing.md"
