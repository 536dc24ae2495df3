"""STASHFLOW_TRACE_PLUGINS=1 prints every hook call and every registration to stderr."""

import os
import re
import subprocess
import sys
from pathlib import Path

from stashflow import hookimpl
from stashflow.cache_policies import INPUTS
from stashflow.plugins import isolated_plugin_manager
from stashflow.registry import get_registry
from stashflow.storage.memory import MemoryStorage

HOOKS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "hooks.md"


class TracedStorage(MemoryStorage):
    type_slug = "traced"
    url_schemes = ()


class TracedPlugin:
    @hookimpl
    def register_storage_types(self, register):
        register(TracedStorage)

    @hookimpl
    def register_cache_policies(self, register):
        register("traced-policy", INPUTS)


def test_each_hook_call_and_registration_is_printed(monkeypatch, capsys):
    monkeypatch.setenv("STASHFLOW_TRACE_PLUGINS", "1")
    get_registry(isolated_plugin_manager(TracedPlugin()))
    err = capsys.readouterr().err.splitlines()
    assert "stashflow: calling register_storage_types of TracedPlugin" in err
    assert "stashflow: register_storage_types: TracedPlugin registers TracedStorage" in err
    assert "stashflow: calling register_cache_policies of TracedPlugin" in err
    assert "stashflow: register_cache_policies: TracedPlugin registers 'traced-policy', INPUTS" in err
    # built-ins are traced too, in registration order: built-ins first
    first = err.index("stashflow: calling register_storage_types of stashflow.storage.memory")
    assert first < err.index("stashflow: calling register_storage_types of TracedPlugin")


def test_nothing_is_printed_without_the_variable_or_with_0(monkeypatch, capsys):
    monkeypatch.delenv("STASHFLOW_TRACE_PLUGINS", raising=False)
    get_registry(isolated_plugin_manager(TracedPlugin()))
    monkeypatch.setenv("STASHFLOW_TRACE_PLUGINS", "0")
    get_registry(isolated_plugin_manager(TracedPlugin()))
    assert capsys.readouterr().err == ""


def test_the_cli_traces_entry_point_plugins_as_the_docs_show(tmp_path):
    env = {**os.environ, "STASHFLOW_HOME": str(tmp_path), "STASHFLOW_TRACE_PLUGINS": "1"}
    out = subprocess.run([sys.executable, "-m", "stashflow", "plugins"], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    traced = out.stderr.splitlines()
    assert "stashflow: register_storage_types: local registers LocalFileSystem" in traced
    # the sample output on the hooks reference page is real output
    sample = re.search(r"\$ STASHFLOW_TRACE_PLUGINS=1 stashflow plugins\n(.*?)```",
                       HOOKS_PAGE.read_text(), re.S).group(1)
    shown = [line for line in sample.splitlines() if line.startswith("stashflow: ")]
    assert shown and all(line in traced for line in shown), shown
    plain = subprocess.run([sys.executable, "-m", "stashflow", "plugins"],
                           env={**env, "STASHFLOW_TRACE_PLUGINS": ""},
                           capture_output=True, text=True, timeout=120, check=True)
    assert "stashflow: calling" not in plain.stderr
