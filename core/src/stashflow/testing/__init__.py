"""The plugin authors' kit: pytest fixtures and conformance suites (a pytest plugin).

Registered through the `pytest11` entry point, so any project with stashflow
installed has these fixtures:

- ``stashflow_home``: an empty, private STASHFLOW_HOME for the test; settings,
  blocks, local results and the plugin registry start from scratch.
- ``isolated_plugins``: a plugin manager with only the built-ins registered.
- ``result_store``: a ResultStore on a temp directory.

and these suites, which a plugin's tests subclass, supplying only fixtures:

- ``StorageBackendTests``: fixture ``backend`` (a fresh, empty backend).
- ``SerializerTests``: fixtures ``serializer`` and ``values`` (what it must round-trip).
- ``CachePolicyTests``: fixtures ``policy`` and ``inputs`` (sample task inputs).

See docs/guides/write-storage-backend.md and its siblings.
"""

from __future__ import annotations

import pytest

# The suites' asserts are rewritten like a test module's, so failures show values.
pytest.register_assert_rewrite(
    "stashflow.testing._storage", "stashflow.testing._serializers",
    "stashflow.testing._cache_policies",
)

from ._cache_policies import CachePolicyTests  # noqa: E402
from ._serializers import SerializerTests  # noqa: E402
from ._storage import StorageBackendTests  # noqa: E402

__all__ = [
    "CachePolicyTests", "SerializerTests", "StorageBackendTests",
    "isolated_plugins", "result_store", "stashflow_home",
]

def _settings_env() -> tuple[str, ...]:
    """Every setting's variable but STASHFLOW_HOME (set by the fixture), and the profile's."""
    from ..settings import PROFILE_ENV, SETTINGS

    return (PROFILE_ENV, "STASHFLOW_TRACE_PLUGINS",
            *(name for name in SETTINGS if name != "STASHFLOW_HOME"))


def _forget_process_state() -> None:
    from .. import plugins, settings

    plugins.reset()
    settings.forget_cache()


@pytest.fixture
def stashflow_home(tmp_path, monkeypatch):
    home = tmp_path / "stashflow-home"
    home.mkdir()
    monkeypatch.setenv("STASHFLOW_HOME", str(home))
    for name in _settings_env():
        monkeypatch.delenv(name, raising=False)
    _forget_process_state()
    yield home
    _forget_process_state()


@pytest.fixture
def isolated_plugins():
    from ..plugins import isolated_plugin_manager

    return isolated_plugin_manager()


@pytest.fixture
def result_store(tmp_path, stashflow_home):
    from ..results import ResultStore

    return ResultStore(tmp_path / "results")
