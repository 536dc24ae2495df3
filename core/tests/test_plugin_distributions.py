"""Real out-of-tree distributions, built with hatchling and installed with pip into a
temp dir, then used by name from fresh processes."""

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# Build with the hatchling installed here when there is one (offline); else pip fetches it.
_NO_ISOLATION = ["--no-build-isolation"] if importlib.util.find_spec("hatchling") else []

ACME = '''
"""An out-of-tree stashflow plugin: a serializer and a storage type."""
import codecs
import os

from stashflow import hookimpl
from stashflow.serializers import Serializer
from stashflow.storage import StorageBackend


class Rot13Serializer(Serializer):
    type = "acme/rot13"

    def dumps(self, obj):
        return codecs.encode(obj, "rot13").encode()

    def loads(self, data):
        return codecs.decode(bytes(data).decode(), "rot13")


class AcmeDirectory(StorageBackend):
    """Files in a directory named by the URL: acme:///abs/dir."""

    type_slug = "acme-directory"
    url_schemes = ("acme",)

    directory: str = "."

    @classmethod
    def from_url(cls, url):
        return cls(directory=url.split("://", 1)[1])

    def _p(self, key):
        return os.path.join(self.directory, key.replace("/", "__"))

    # As minimal as a third-party backend gets: write takes bytes, and there is
    # read but no open_read.
    def write(self, key, data):
        os.makedirs(self.directory, exist_ok=True)
        with open(self._p(key), "wb") as f:
            f.write(data)

    def read(self, key):
        with open(self._p(key), "rb") as f:
            return f.read()

    def exists(self, key):
        return os.path.exists(self._p(key))

    def delete(self, key):
        if os.path.exists(self._p(key)):
            os.unlink(self._p(key))

    def list(self, prefix=""):
        names = os.listdir(self.directory) if os.path.isdir(self.directory) else []
        return iter([n.replace("__", "/") for n in names if n.replace("__", "/").startswith(prefix)])

    def create(self, key, data):
        if self.exists(key):
            return False
        self.write(key, data)
        return True


@hookimpl
def register_serializers(register):
    register(Rot13Serializer)


@hookimpl
def register_storage_types(register):
    register(AcmeDirectory)
'''


def _package(root: Path, dist: str, version: str, module: str, source: str,
             group: str | None = "stashflow") -> Path:
    pkg = root / dist
    (pkg / module).mkdir(parents=True)
    (pkg / module / "__init__.py").write_text(source)
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"

        [project]
        name = "{dist}"
        version = "{version}"
        dependencies = ["stashflow"]

        {f'[project.entry-points."{group}"]' if group else ""}
        {f'{module.removeprefix("stashflow_")} = "{module}"' if group else ""}

        [tool.hatch.build.targets.wheel]
        packages = ["{module}"]
        """))
    return pkg


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("dists")
    acme = _package(root, "stashflow-acme", "4.5.6", "stashflow_acme", ACME)
    broken = _package(root, "stashflow-broken", "0.0.1", "stashflow_broken",
                      '"""Fails at import."""\n\nraise RuntimeError("acme broke on purpose")\n')
    # Two author mistakes: no entry point at all, and a typo in the group's name.
    forgot = _package(root, "stashflow-forgot", "1.0", "stashflow_forgot", ACME, group=None)
    typo = _package(root, "acme-typo", "2.0", "acme_typo", ACME, group="stashflow.plugins")
    target = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *_NO_ISOLATION,
         "--disable-pip-version-check", "--target", str(target), str(acme), str(broken),
         str(forgot), str(typo)],
        check=True, capture_output=True, timeout=300,
    )
    return target


def _run(site: Path, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("STASHFLOW_")}
    environ.update(PYTHONPATH=str(site), STASHFLOW_HOME=str(home), **env)
    return subprocess.run([sys.executable, "-W", "always", *args], env=environ,
                          capture_output=True, text=True, timeout=120)


def test_installed_distribution_is_listed_with_its_version(site, stashflow_home):
    result = _run(site, stashflow_home, "-m", "stashflow.cli", "plugins")
    assert result.returncode == 1, result.stderr  # stashflow-broken failed to load
    out = result.stdout
    assert "acme  (stashflow-acme 4.5.6, entry point acme = stashflow_acme)" in out
    assert "serializer: acme/rot13" in out
    assert "storage: acme-directory" in out
    assert "scheme: acme" in out
    types = _run(site, stashflow_home, "-m", "stashflow", "block", "types")
    assert "acme-directory  schemes: acme://  fields: directory  (plugin acme)" in types.stdout


def test_installed_distribution_works_by_name_through_result_store(site, stashflow_home, tmp_path):
    script = textwrap.dedent(f"""
        from stashflow import ResultStore
        store = ResultStore("acme://{tmp_path}/acme", "acme/rot13")
        meta = store.write("a/b", "hello")
        print(meta.serializer, store.read("a/b"), sorted(store.list()), store.exists("a/b"))
        local = ResultStore({str(tmp_path / "local")!r}, serializer="acme/rot13")
        local.write("k", "hello")
    """)
    result = _run(site, stashflow_home, "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["acme/rot13", "hello", "['a/b']", "True"]
    on_disk = (tmp_path / "acme" / "a__b").read_bytes()
    assert on_disk.endswith(b"uryyb")  # rot13 of hello, raw after the header
    # read back in a fresh process, by the name in the record's header
    read = _run(site, stashflow_home, "-c",
                f"from stashflow import ResultStore; print(ResultStore({str(tmp_path / 'local')!r})"
                ".read('k'))")
    assert read.stdout.strip() == "hello", read.stderr
    # without the distribution on the path, the name is unknown and says so
    environ = {k: v for k, v in os.environ.items() if not k.startswith("STASHFLOW_")}
    missing = subprocess.run(
        [sys.executable, "-c", f"from stashflow import ResultStore; "
                               f"ResultStore({str(tmp_path / 'local')!r}).read('k')"],
        env={**environ, "STASHFLOW_HOME": str(stashflow_home)}, capture_output=True, text=True)
    assert missing.returncode != 0
    assert "SerializerNotFound" in missing.stderr and "'acme/rot13'" in missing.stderr


def test_a_distribution_that_raises_at_import_is_named_and_pickle_still_works(site, stashflow_home,
                                                                              tmp_path):
    script = f"from stashflow import ResultStore; s = ResultStore({str(tmp_path)!r}); " \
             "s.write('k', {1, 2}); print(s.read('k'))"
    result = _run(site, stashflow_home, "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{1, 2}"
    warning = [line for line in result.stderr.splitlines() if "stashflow-broken" in line]
    assert warning, result.stderr
    assert "PluginWarning" in warning[0]
    assert "entry point 'broken = stashflow_broken' of stashflow-broken 0.0.1" in warning[0]
    assert "RuntimeError: acme broke on purpose" in warning[0]
    listed = _run(site, stashflow_home, "-m", "stashflow", "plugins")
    assert listed.returncode == 1
    assert "broken  (stashflow-broken 0.0.1, entry point broken = stashflow_broken)" in listed.stdout
    assert "ERROR: error importing 'stashflow_broken': RuntimeError: acme broke on purpose" \
        in listed.stdout


@pytest.mark.parametrize("disabled", ["acme,broken,stashflow-forgot,acme-typo",
                                      "stashflow-acme,stashflow-broken,stashflow-forgot,acme-typo"])
def test_installed_distributions_can_be_disabled(site, stashflow_home, disabled):
    result = _run(site, stashflow_home, "-m", "stashflow", "plugins",
                  STASHFLOW_DISABLE_PLUGINS=disabled)
    assert result.returncode == 0, result.stderr
    assert "acme  (stashflow-acme 4.5.6, entry point acme = stashflow_acme)  disabled" \
        in result.stdout
    assert "acme/rot13" not in result.stdout and "acme broke" not in result.stdout
    assert "stashflow-broken" not in result.stderr  # never imported, so no warning
    assert "local  (stashflow-local" in result.stdout


def test_a_distribution_without_an_entry_point_or_with_a_misspelled_group_is_named(site,
                                                                                   stashflow_home):
    result = _run(site, stashflow_home, "-c", "from stashflow.registry import get_registry; "
                                              "get_registry()")
    forgot = [line for line in result.stderr.splitlines() if "stashflow-forgot" in line]
    assert forgot and "declares no entry point in the 'stashflow' group" in forgot[0], result.stderr
    assert "[project.entry-points.stashflow]" in forgot[0]
    typo = [line for line in result.stderr.splitlines() if "acme-typo" in line]
    assert typo and "group 'stashflow.plugins', not 'stashflow'" in typo[0], result.stderr
    listed = _run(site, stashflow_home, "-m", "stashflow", "plugins")
    assert listed.returncode == 1
    assert "stashflow-forgot  (1.0, no plugin loaded)" in listed.stdout
    assert "acme-typo  (2.0, no plugin loaded)" in listed.stdout


def test_plugin_warnings_point_at_the_plugin_and_filter_like_any_warning(site, stashflow_home):
    load = "from stashflow.registry import get_registry; get_registry()"
    shown = _run(site, stashflow_home, "-c", load)
    [line] = [ln for ln in shown.stderr.splitlines()
              if "acme broke on purpose" in ln and "PluginWarning" in ln]
    # attributed to the plugin's own file and line, not to stashflow's loader
    assert f"{site}/stashflow_broken/__init__.py:3: PluginWarning:" in line, line
    # From the command line Python resolves only standard-library categories (it reads -W
    # before site-packages is on the path): the message prefix or the module does it.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("STASHFLOW_")}
    environ.update(PYTHONPATH=str(site), STASHFLOW_HOME=str(stashflow_home))
    for flags in (["-W", "ignore:stashflow:UserWarning"],
                  ["-W", "ignore::UserWarning:stashflow_broken", "-W", "ignore::UserWarning:acme_typo",
                   "-W", "ignore::UserWarning:stashflow_forgot"]):
        quiet = subprocess.run([sys.executable, *flags, "-c", load], capture_output=True,
                               text=True, timeout=120, env=environ)
        assert quiet.returncode == 0 and "PluginWarning" not in quiet.stderr, quiet.stderr
    in_code = _run(site, stashflow_home, "-c",
                   "import warnings; from stashflow.exceptions import PluginWarning; "
                   "warnings.filterwarnings('ignore', category=PluginWarning); " + load)
    assert "PluginWarning" not in in_code.stderr, in_code.stderr
    by_module = _run(site, stashflow_home, "-c",
                     "import warnings; warnings.filterwarnings('ignore', module='stashflow_broken'); "
                     + load)
    assert "acme broke on purpose" not in by_module.stderr
    assert "stashflow-forgot" in by_module.stderr  # only that plugin's warnings were silenced


def test_trace_plugins_shows_the_failing_file_and_line(site, stashflow_home):
    traced = _run(site, stashflow_home, "-m", "stashflow", "plugins", STASHFLOW_TRACE_PLUGINS="1")
    assert f"failed at {site}/stashflow_broken/__init__.py:3:" in traced.stderr, traced.stderr
    assert 'raise RuntimeError("acme broke on purpose")' in traced.stderr  # the traceback
