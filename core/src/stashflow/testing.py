"""Fixtures for testing stashflow and stashflow plugins (a pytest plugin).

Registered through the `pytest11` entry point, so any project with stashflow
installed can use them:

- ``stashflow_home``: an empty, private STASHFLOW_HOME for the test; settings,
  blocks, local results and the plugin registry start from scratch.
- ``isolated_plugins``: a plugin manager with only the built-ins registered.
- ``result_store``: a ResultStore on a temp directory.
"""

from __future__ import annotations

import pytest


def _forget_process_state() -> None:
    from . import plugins, settings

    plugins.reset()
    settings._profile_cache = None


@pytest.fixture
def stashflow_home(tmp_path, monkeypatch):
    home = tmp_path / "stashflow-home"
    home.mkdir()
    monkeypatch.setenv("STASHFLOW_HOME", str(home))
    for name in ("STASHFLOW_PROFILE", "STASHFLOW_RESULTS_PERSIST_BY_DEFAULT",
                 "STASHFLOW_DEFAULT_RESULT_STORAGE_BLOCK", "STASHFLOW_RESULTS_DEFAULT_SERIALIZER",
                 "STASHFLOW_LOCAL_STORAGE_PATH", "STASHFLOW_TASKS_REFRESH_CACHE",
                 "STASHFLOW_RESULTS_SIGNING_KEY", "STASHFLOW_DISABLE_PLUGINS",
                 "STASHFLOW_TRACE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    _forget_process_state()
    yield home
    _forget_process_state()


@pytest.fixture
def isolated_plugins():
    from .plugins import isolated_plugin_manager

    return isolated_plugin_manager()


@pytest.fixture
def result_store(tmp_path, stashflow_home):
    from .results import ResultStore

    return ResultStore(tmp_path / "results")
