"""The plugin system: isolated managers, duplicates, broken plugins, disabling.

Entry points are faked in-process here (importlib.metadata.entry_points is
patched); test_plugin_distributions.py installs real distributions with pip.
"""

import importlib.metadata
import warnings

import pluggy
import pytest
from click.testing import CliRunner
from stashflow import ResultStore, hookimpl, hookspecs, plugins
from stashflow.cli import main
from stashflow.exceptions import SerializerNotFound, StorageNotFound
from stashflow.plugins import PluginWarning, isolated_plugin_manager
from stashflow.registry import get_registry
from stashflow.serializers import Serializer
from stashflow.serializers._builtin import PickleSerializer
from stashflow.storage.memory import MemoryStorage


class UpperSerializer(Serializer):
    type = "test/upper"

    def dumps(self, obj):
        return str(obj).upper().encode()

    def loads(self, data):
        return bytes(data).decode()


class DictStorage(MemoryStorage):
    type_slug = "test-dict"
    url_schemes = ("testdict",)


class GoodPlugin:
    @hookimpl
    def register_serializers(self, register):
        register(UpperSerializer)

    @hookimpl
    def register_storage_types(self, register):
        register(DictStorage)


def _works_by_name(pm=None):
    store = ResultStore("testdict://t", "test/upper", plugins=pm)
    store.write("k", "abc")
    return store.read("k")


# -- isolated managers -------------------------------------------------------------------


def test_a_plain_isolated_manager_is_seen_by_its_store_and_not_by_the_process():
    pm = pluggy.PluginManager("stashflow")
    pm.add_hookspecs(hookspecs)
    pm.register(GoodPlugin(), name="good")
    assert _works_by_name(pm) == "ABC"
    isolated = get_registry(pm)
    assert set(isolated.serializers) == {"test/upper"}
    assert set(isolated.storage_types) == {"test-dict"}
    with pytest.raises(SerializerNotFound):
        ResultStore("testdict://t", "pickle", plugins=pm)
    with pytest.raises(SerializerNotFound, match="test/upper"):
        ResultStore("memory://x", "test/upper")
    with pytest.raises(StorageNotFound, match="testdict"):
        ResultStore("testdict://t")
    registry = get_registry()
    assert "test/upper" not in registry.serializers
    assert "test-dict" not in registry.storage_types
    assert "good" not in [info.name for info in registry.plugins]
    assert not plugins.pm.has_plugin("good")


def test_the_helper_builds_an_isolated_manager_with_the_builtins():
    pm = isolated_plugin_manager(GoodPlugin())
    registry = get_registry(pm)
    assert {"pickle", "json", "msgpack", "test/upper"} <= set(registry.serializers)
    assert "compressed/json" not in registry.serializers  # no entry points
    assert "local-file-system" not in registry.storage_types
    assert _works_by_name(pm) == "ABC"
    assert isolated_plugin_manager(GoodPlugin(), builtins=False).get_plugins() != set()
    assert set(get_registry(isolated_plugin_manager(builtins=False)).serializers) == set()


def test_a_plugin_registered_after_first_use_is_seen_by_the_next_store():
    pm = isolated_plugin_manager()
    assert "test/upper" not in ResultStore("memory://x", plugins=pm).registry.serializers
    pm.register(GoodPlugin(), name="late")
    assert _works_by_name(pm) == "ABC"


def test_a_duplicate_name_keeps_the_first_and_the_warning_names_both():
    class Impostor(PickleSerializer):
        pass

    class DupStorage(MemoryStorage):
        type_slug = "memory"

    class DupPlugin:
        @hookimpl
        def register_serializers(self, register):
            register(Impostor)

        @hookimpl
        def register_storage_types(self, register):
            register(DupStorage)

    pm = isolated_plugin_manager()
    pm.register(DupPlugin(), name="dup-plugin")
    with pytest.warns(PluginWarning) as caught:
        registry = get_registry(pm)
    messages = [str(w.message) for w in caught]
    assert any("'dup-plugin'" in m and "serializer 'pickle'" in m
               and "stashflow.serializers._builtin" in m for m in messages), messages
    assert any("'dup-plugin'" in m and "storage 'memory'" in m
               and "stashflow.storage.memory" in m for m in messages), messages
    assert registry.serializers["pickle"] is PickleSerializer
    assert registry.storage_types["memory"] is MemoryStorage
    assert registry.owner("serializer", "pickle") == "stashflow.serializers._builtin"


def test_broken_hooks_warn_by_plugin_name_and_the_others_keep_working():
    class Raising:
        @hookimpl
        def register_serializers(self, register):
            raise RuntimeError("kaput")

    class NotABackend:
        @hookimpl
        def register_storage_types(self, register):
            register(dict)
            register(PickleSerializer)

    class Nameless(Serializer):
        pass

    class NoName:
        @hookimpl
        def register_serializers(self, register):
            register(Nameless)
            register("json", "extra")

    pm = isolated_plugin_manager(GoodPlugin())
    pm.register(Raising(), name="raising")
    pm.register(NotABackend(), name="not-a-backend")
    pm.register(NoName(), name="no-name")
    with pytest.warns(PluginWarning) as caught:
        registry = get_registry(pm)
    text = "\n".join(str(w.message) for w in caught)
    assert "'raising'" in text and "RuntimeError: kaput" in text
    assert "'not-a-backend'" in text and "is not a StorageBackend subclass" in text
    assert "'no-name'" in text and "has no type name" in text and "called register wrongly" in text
    assert {"pickle", "json", "msgpack", "test/upper"} <= set(registry.serializers)
    assert _works_by_name(pm) == "ABC"
    assert ResultStore("memory://m", plugins=pm).write("k", 1).serializer == "pickle"


# -- entry points (faked) ---------------------------------------------------------------


class _Dist:
    def __init__(self, name, version="1.2.3"):
        self.name, self.version = name, version


class _EntryPoint:
    group = "stashflow"

    def __init__(self, name, value, dist, target):
        self.name, self.value, self.dist, self._target = name, value, _Dist(dist), target

    def load(self):
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


@pytest.fixture
def entry_points(monkeypatch):
    """Call with _EntryPoint objects: they become the `stashflow` entry points."""
    found = []

    def fake(**params):
        assert params == {"group": "stashflow"}
        return list(found)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)

    def install(*eps):
        found.extend(eps)
        plugins.reset()

    return install


def _load_with_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = get_registry()
    return registry, [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]


def _cli_plugins(exit_code: int = 0) -> str:
    """`stashflow plugins`: exit code 1 when any plugin failed to load."""
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == exit_code, result.output
    return result.output


def test_entry_point_plugin_is_listed_with_distribution_version_and_names(entry_points):
    entry_points(_EntryPoint("good", "good_mod", "good-dist", GoodPlugin()))
    registry, messages = _load_with_warnings()
    assert messages == []
    assert _works_by_name() == "ABC"
    info = {i.name: i for i in registry.plugins}["good"]
    assert (info.distribution, info.version, info.entry_point) == ("good-dist", "1.2.3",
                                                                   "good = good_mod")
    assert info.registered == {"storage": ["test-dict"], "scheme": ["testdict"],
                               "serializer": ["test/upper"]}
    out = _cli_plugins()
    assert "good  (good-dist 1.2.3, entry point good = good_mod)" in out
    assert "serializer: test/upper" in out and "storage: test-dict" in out


def test_a_plugin_failing_at_import_is_named_and_the_rest_works(entry_points):
    entry_points(
        _EntryPoint("broken", "broken_mod", "broken-dist", ImportError("no module named zzz")),
        _EntryPoint("exits", "exits_mod", "exits-dist", SystemExit(3)),
        _EntryPoint("good", "good_mod", "good-dist", GoodPlugin()),
    )
    _registry, messages = _load_with_warnings()
    broken = [m for m in messages if "broken" in m]
    assert len(broken) == 1
    assert "entry point 'broken = broken_mod' of broken-dist 1.2.3" in broken[0]
    assert "ImportError: no module named zzz" in broken[0]
    assert any("exits-dist" in m and "SystemExit" in m for m in messages)
    assert _works_by_name() == "ABC"
    assert ResultStore("memory://p", "pickle").write("k", {1}).serializer == "pickle"
    out = _cli_plugins(exit_code=1)
    assert "broken  (broken-dist 1.2.3, entry point broken = broken_mod)" in out
    assert "ERROR: error importing 'broken_mod': ImportError: no module named zzz" in out


def test_a_hook_with_a_wrongly_named_argument_is_refused_by_name(entry_points):
    class WrongArg:
        @hookimpl
        def register_serializers(self, registrar):
            registrar(UpperSerializer)

    entry_points(_EntryPoint("wrong", "wrong_mod", "wrong-dist", WrongArg()),
                 _EntryPoint("good", "good_mod", "good-dist", GoodPlugin()))
    _registry, messages = _load_with_warnings()
    assert len(messages) == 1
    assert "entry point 'wrong = wrong_mod' of wrong-dist" in messages[0]
    assert "wrong signature" in messages[0] and "registrar" in messages[0]
    assert _works_by_name() == "ABC"
    assert "ERROR:" in _cli_plugins(exit_code=1)


def test_a_hook_stashflow_does_not_have_unloads_the_plugin(entry_points):
    class Future:
        @hookimpl
        def register_time_machines(self, register):
            raise AssertionError("never called")

        @hookimpl
        def register_serializers(self, register):
            raise AssertionError("not loaded, so never called")

    entry_points(_EntryPoint("future", "future_mod", "future-dist", Future()))
    _registry, messages = _load_with_warnings()
    assert len(messages) == 1
    assert "register_time_machines" in messages[0] and "future-dist" in messages[0]
    assert not plugins.pm.has_plugin("future")


def test_hooks_raising_or_registering_junk_warn_by_distribution(entry_points):
    class Raising:
        @hookimpl
        def register_storage_types(self, register):
            register(DictStorage)
            raise ValueError("half way")

    class Junk:
        @hookimpl
        def register_storage_types(self, register):
            register(object())

    entry_points(_EntryPoint("raising", "r_mod", "raising-dist", Raising()),
                 _EntryPoint("junk", "j_mod", "junk-dist", Junk()))
    registry, messages = _load_with_warnings()
    assert any("raising-dist" in m and "ValueError: half way" in m for m in messages)
    assert any("junk-dist" in m and "not a StorageBackend subclass" in m for m in messages)
    assert "test-dict" in registry.storage_types  # what it registered before raising stays
    assert "local-file-system" not in registry.storage_types  # only the fakes are installed


def test_a_trylast_plugin_cannot_take_a_builtin_name(entry_points):
    class Impostor(PickleSerializer):
        pass

    class Sneaky:
        @hookimpl(trylast=True)
        def register_serializers(self, register):
            register(Impostor)

    entry_points(_EntryPoint("sneaky", "s_mod", "sneaky-dist", Sneaky()))
    registry, messages = _load_with_warnings()
    assert registry.serializers["pickle"] is PickleSerializer
    assert any("sneaky-dist" in m and "'pickle'" in m for m in messages)


def test_two_distributions_using_the_same_entry_point_name_both_load(entry_points):
    class OtherSerializer(UpperSerializer):
        type = "test/other"

    class Other:
        @hookimpl
        def register_serializers(self, register):
            register(OtherSerializer)

    entry_points(_EntryPoint("plugin", "a_mod", "a-dist", GoodPlugin()),
                 _EntryPoint("plugin", "b_mod", "b-dist", Other()))
    registry, messages = _load_with_warnings()
    assert messages == []
    assert {"test/upper", "test/other"} <= set(registry.serializers)
    assert {i.name for i in registry.plugins} >= {"plugin", "b-dist:plugin"}


@pytest.mark.parametrize("disabled", ["good", "good-dist", "Good_Dist", "other, good"])
def test_disable_plugins_by_entry_point_or_distribution_name(entry_points, monkeypatch, disabled):
    monkeypatch.setenv("STASHFLOW_DISABLE_PLUGINS", disabled)
    entry_points(_EntryPoint("good", "good_mod", "good-dist", GoodPlugin()))
    registry, messages = _load_with_warnings()
    assert messages == []
    assert "test/upper" not in registry.serializers
    assert ("good  (good-dist 1.2.3, entry point good = good_mod)  disabled by "
            "STASHFLOW_DISABLE_PLUGINS\n") in _cli_plugins()
    assert "test/upper" not in _cli_plugins()
    with pytest.raises(SerializerNotFound):
        ResultStore("memory://x", "test/upper")


def test_disable_plugins_from_the_profile(entry_points):
    from stashflow import settings

    settings.set_values({"STASHFLOW_DISABLE_PLUGINS": "good-dist"})
    entry_points(_EntryPoint("good", "good_mod", "good-dist", GoodPlugin()))
    assert "test/upper" not in get_registry().serializers


def test_trace_plugins_prints_each_registration(entry_points, monkeypatch, capsys):
    monkeypatch.setenv("STASHFLOW_TRACE_PLUGINS", "1")
    entry_points(_EntryPoint("good", "good_mod", "good-dist", GoodPlugin()))
    get_registry()
    err = capsys.readouterr().err
    assert "register_serializers: good registers UpperSerializer" in err


def test_the_installed_plugins_are_listed_with_versions():
    out = _cli_plugins()
    assert "stashflow.serializers._builtin  (stashflow 0.1.0, built-in)" in out
    assert "serializer: pickle, json, msgpack" in out
    assert "stashflow.storage.memory  (stashflow 0.1.0, built-in)" in out
    assert "local  (stashflow-local 0.1.0, entry point local = stashflow_local)" in out
    assert "storage: local-file-system" in out
    assert ("compressed  (stashflow-compressed-json 0.1.0, entry point "
            "compressed = stashflow_compressed)") in out
    assert "serializer: compressed/json, compressed/pickle" in out
    import json

    listed = json.loads(CliRunner().invoke(main, ["plugins", "--json"]).output)
    local = next(p for p in listed if p["name"] == "local")
    assert local["distribution"] == "stashflow-local"
    assert local["registered"]["storage"] == ["local-file-system"]


def test_disable_a_builtin_by_module_name(monkeypatch):
    monkeypatch.setenv("STASHFLOW_DISABLE_PLUGINS", "stashflow.storage.memory")
    plugins.reset()
    with pytest.raises(StorageNotFound, match="memory"):
        ResultStore("memory://x")
    assert "stashflow.storage.memory  (stashflow 0.1.0, built-in)  disabled" in _cli_plugins()
    assert "pickle" in get_registry().serializers


def test_isolated_plugins_are_named_by_their_class_in_warnings():
    class Raising:
        @hookimpl
        def register_serializers(self, register):
            raise RuntimeError("kaput")

    with pytest.warns(PluginWarning) as caught:
        get_registry(isolated_plugin_manager(Raising(), Raising()))
    names = sorted(str(w.message).split("'")[1].rsplit(".", 1)[-1] for w in caught)
    assert names == ["Raising", "Raising#2"]


def test_an_entry_point_with_no_hooks_is_reported(entry_points):
    class Unmarked:
        def register_serializers(self, register):  # forgot @hookimpl
            register(UpperSerializer)

    entry_points(_EntryPoint("unmarked", "u_mod", "unmarked-dist", Unmarked()))
    registry, messages = _load_with_warnings()
    assert len(messages) == 1
    assert "unmarked-dist" in messages[0] and "implements no stashflow hooks" in messages[0]
    assert "test/upper" not in registry.serializers
