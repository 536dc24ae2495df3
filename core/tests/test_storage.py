"""Storage in core: memory storage, the generic fsspec backend, and storage specs."""

import io
import uuid
from pathlib import Path

import fsspec
import pytest
from stashflow import ResultStore
from stashflow.exceptions import ResultNotFound, SerializationError, StorageNotFound
from stashflow.registry import resolve_storage
from stashflow.storage import FsspecStorageBackend, StorageBackend, record_keys
from stashflow.storage.memory import MemoryStorage
from stashflow_local import LocalFileSystem


class FsspecMemory(FsspecStorageBackend):
    """The generic fsspec backend over fsspec's in-memory file system."""

    type_slug = "test-fsspec-memory"
    root_path: str = "/sf"

    def filesystem(self):
        return fsspec.filesystem("memory")

    def root(self):
        return self.root_path


@pytest.fixture(params=["memory", "fsspec"])
def backend(request):
    name = uuid.uuid4().hex
    if request.param == "memory":
        yield MemoryStorage(name=name)
        MemoryStorage(name=name).clear()
    else:
        yield FsspecMemory(root_path=f"/sf-{name}")
        fsspec.filesystem("memory").rm(f"/sf-{name}", recursive=True)


def test_backend_primitives(backend):
    backend.write("a/b", b"hello")
    backend.write("a/c", io.BytesIO(b"from file"))
    backend.write("ab", memoryview(b"mv"))
    assert backend.read("a/b") == b"hello"
    assert backend.read("a/c") == b"from file"
    with backend.open_read("a/b") as f:
        f.seek(1)
        assert f.read(3) == b"ell"
    assert backend.exists("a/b") and not backend.exists("zz")
    assert backend.stat("a/b")["size"] == 5
    assert sorted(backend.list()) == ["a/b", "a/c", "ab"]
    assert sorted(backend.list("a/")) == ["a/b", "a/c"]
    assert sorted(backend.list("a")) == ["a/b", "a/c", "ab"]
    assert list(backend.list("nothing/")) == []
    backend.delete("a/b")
    backend.delete("a/b")  # missing: no-op
    assert not backend.exists("a/b")
    with pytest.raises(FileNotFoundError):
        backend.read("a/b")
    with pytest.raises(FileNotFoundError):
        backend.open_read("a/b")
    assert backend.create("n", b"first") is True
    assert backend.create("n", b"second") is False
    assert backend.read("n") == b"first"


def test_keys_merely_containing_the_reserved_word_are_listed(backend):
    backend.write("x.stashflow", b"1")
    backend.write("a/b.stashflow-tmp", b"2")
    assert sorted(backend.list()) == ["a/b.stashflow-tmp", "x.stashflow"]


def test_internal_keys_are_kept_out_of_record_keys_unless_the_prefix_asks(backend, tmp_path):
    internal = ".stashflow/locks/abc/000000000001"
    for storage in (backend, LocalFileSystem(basepath=str(tmp_path))):
        storage.write("user", b"1")
        storage.write(internal, b"2")
        assert list(storage.list(".stashflow/locks/abc/")) == [internal]
        assert list(record_keys(storage, ".stashflow/locks/")) == [internal]
        assert list(record_keys(storage)) == ["user"]
        assert sorted(storage.list()) == [internal, "user"]  # a backend lists what it holds


@pytest.mark.parametrize("spec", ["memory://", "fsspec"])
def test_result_store_on_non_local_backends(spec):
    storage = FsspecMemory(root_path=f"/sf-{uuid.uuid4().hex}") if spec == "fsspec" \
        else f"memory://{uuid.uuid4().hex}"
    store = ResultStore(storage, "pickle")
    store.write("k", {"v": 1})
    assert store.read("k") == {"v": 1}
    assert store.exists("k") and list(store.list()) == ["k"]
    with pytest.raises(ResultNotFound):
        store.read("missing")
    with pytest.raises(KeyError):
        store.read("missing")
    assert store.create("k", 2) is False and store.create("j", 2) is True
    store.delete("k")
    store.delete("k")
    assert list(store.list()) == ["j"]


class Explodes:
    def __reduce__(self):
        raise RuntimeError("half way")


def test_memory_storage_keeps_the_previous_record_when_serializing_fails():
    store = ResultStore(f"memory://{uuid.uuid4().hex}", "pickle")
    store.write("k", "previous")
    with pytest.raises(SerializationError):
        store.write("k", [b"x" * 1_000_000, Explodes()])
    assert store.read("k") == "previous"
    assert list(store.list()) == ["k"]


def test_memory_storage_is_shared_by_name_and_separate_between_names():
    a1, a2 = ResultStore("memory://shared-a"), ResultStore("memory://shared-a")
    b = ResultStore("memory://shared-b")
    a1.write("k", 1)
    assert a2.read("k") == 1
    assert not b.exists("k")
    assert ResultStore(MemoryStorage(name="shared-a")).read("k") == 1
    MemoryStorage(name="shared-a").clear()
    assert not a2.exists("k")


def test_storage_specs(tmp_path):
    assert resolve_storage("memory://x") == MemoryStorage(name="x")
    assert resolve_storage("memory://") == MemoryStorage(name="default")
    assert resolve_storage("MEMORY://x") == MemoryStorage(name="x")
    local = LocalFileSystem(basepath=str(tmp_path))
    assert resolve_storage(local) is local
    assert resolve_storage(tmp_path) == local
    assert resolve_storage(str(tmp_path)) == local
    assert resolve_storage(f"file://{tmp_path}") == local


@pytest.mark.parametrize("spec, error, message", [
    ("zz://bucket", StorageNotFound, "no storage is registered for URL scheme 'zz'"),
    ("relative-dir", StorageNotFound, "give a URL"),
    ("unknown-type/name", StorageNotFound, "block slug"),
    (42, TypeError, "StorageBackend, a URL"),
    ("", TypeError, "StorageBackend, a URL"),
])
def test_bad_storage_specs_say_what_is_accepted(spec, error, message):
    with pytest.raises(error, match=message):
        resolve_storage(spec)


def test_an_uninstalled_storage_scheme_names_its_plugin(monkeypatch):
    from stashflow import plugins

    monkeypatch.setenv("STASHFLOW_DISABLE_PLUGINS", "stashflow-local")
    plugins.reset()
    with pytest.raises(StorageNotFound, match="pip install stashflow-local"):
        resolve_storage("file:///tmp/x")
    with pytest.raises(StorageNotFound, match="stashflow-local"):
        ResultStore(Path("/tmp/x"))


def test_relative_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_storage("./results") == LocalFileSystem(basepath=str(tmp_path / "results"))
    assert resolve_storage(Path("results")) == LocalFileSystem(basepath=str(tmp_path / "results"))


def test_a_result_store_can_be_sent_to_another_process(tmp_path):
    import pickle
    import subprocess
    import sys

    from stashflow.plugins import isolated_plugin_manager

    store = ResultStore(tmp_path / "r", "json", signing_key="k", trusted_serializers={"json"})
    store.write("k", [1, 2])
    script = ("import pickle, sys; s = pickle.loads(sys.stdin.buffer.read()); "
              "print(s.read('k'), s.trusted_serializers, s.storage.basepath); s.write('w', 3)")
    result = subprocess.run([sys.executable, "-c", script], input=pickle.dumps(store),
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["[1,", "2]", "frozenset({'json'})", str(tmp_path / "r")]
    assert store.read("w") == 3  # signed with the same key in the other process
    with pytest.raises(TypeError, match="own plugin manager"):
        pickle.dumps(ResultStore("memory://iso", plugins=isolated_plugin_manager()))


class MinimalBackend(StorageBackend):
    """What a quick third-party backend looks like: bytes in, bytes out, no open_read."""

    type_slug = "test-minimal"
    objects: dict[str, bytes] = {}

    def write(self, key, data):
        assert isinstance(data, bytes)
        self.objects[key] = data

    def read(self, key):
        try:
            return self.objects[key]
        except KeyError:
            raise FileNotFoundError(key) from None

    def exists(self, key):
        return key in self.objects

    def delete(self, key):
        self.objects.pop(key, None)

    def list(self, prefix=""):
        return iter([k for k in self.objects if k.startswith(prefix)])

    def create(self, key, data):
        assert isinstance(data, bytes)
        return self.objects.setdefault(key, data) is data


def test_a_minimal_backend_works_through_result_store():
    backend = MinimalBackend(objects={})
    store = ResultStore(backend, "pickle")
    assert store.write("k", {"v": [1, 2]}).size > 0
    assert store.read("k") == {"v": [1, 2]}
    assert store.read_metadata("k").serializer == "pickle"
    assert store.create("c", 1) is True and store.create("c", 2) is False
    assert store.read("c") == 1
    with pytest.raises(ResultNotFound):
        store.read("missing")
    assert sorted(store.list()) == ["c", "k"]


def test_a_backend_with_neither_read_nor_open_read_says_so():
    class Nothing(StorageBackend):
        type_slug = "test-nothing"

    for method in (Nothing().read, Nothing().open_read):
        with pytest.raises(NotImplementedError, match="neither read nor open_read"):
            method("k")


def test_a_bare_type_slug_means_that_type_with_its_defaults(stashflow_home):
    assert resolve_storage("memory") == MemoryStorage(name="default")
    assert resolve_storage("local-file-system") == LocalFileSystem(
        basepath=str(stashflow_home / "storage"))

    class NeedsBucket(MemoryStorage):
        type_slug = "test-needs-bucket"
        url_schemes = ()
        bucket: str

    from stashflow import hookimpl
    from stashflow.plugins import isolated_plugin_manager

    class Plugin:
        @hookimpl
        def register_storage_types(self, register):
            register(NeedsBucket)

    with pytest.raises(StorageNotFound, match=r"needs configuration.*'bucket'"):
        ResultStore("test-needs-bucket", plugins=isolated_plugin_manager(Plugin()))
