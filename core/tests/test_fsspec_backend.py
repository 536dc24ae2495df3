"""FsspecStorageBackend on a real FTP server (the docs' example plugin) and on local files.

Writes are a temp file renamed over the key, so readers racing writers never see
part of a record; `create` has one winner by hard link or by a marker folder; a
client that is not thread-safe is one per thread; what a dead writer leaves is
found and removed by gc.
"""

import contextlib
import importlib.util
import io
import logging
import os
import pickle
import threading
import time
import uuid
from pathlib import Path

import fsspec
import pytest
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import ThreadedFTPServer
from stashflow import ResultStore
from stashflow.exceptions import StorageError
from stashflow.keys import TEMP_PREFIX
from stashflow.maintenance import gc, temp_keys
from stashflow.storage import FsspecStorageBackend, record_keys
from stashflow.storage.fsspec import MARKER_PREFIX
from stashflow.testing import StorageBackendTests

MiB = 1024 * 1024
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "ftp-plugin"


def _example_module():
    """The FTP example plugin's module, loaded from its source (it is not installed)."""
    spec = importlib.util.spec_from_file_location(
        "_ftp_example", EXAMPLE / "src" / "stashflow_ftp" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FtpStorage = _example_module().FtpStorage


class LocalFsspec(FsspecStorageBackend):
    """fsspec's local file system under `path`: hard links for create, one client per process."""

    type_slug = "test-local-fsspec"
    create_by = "link"
    thread_safe_client = True

    path: str

    def connect(self):
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem(skip_instance_cache=True)  # fsspec would share one instance

    def root(self):
        return self.path


class LocalFsspecMarker(LocalFsspec):
    """The same files with what FTP has: a marker folder for create, a client per thread."""

    type_slug = "test-local-fsspec-marker"
    create_by = "marker"
    thread_safe_client = False


class MemoryObjectStore(FsspecStorageBackend):
    """fsspec's memory file system declared as an object store: one PUT per write."""

    type_slug = "test-fsspec-object-store"
    atomic_rename = False
    thread_safe_client = True

    root_path: str

    def connect(self):
        return fsspec.filesystem("memory")

    def root(self):
        return self.root_path


class MemoryObjectStoreMarker(MemoryObjectStore):
    type_slug = "test-fsspec-object-store-marker"
    create_by = "marker"


# -- an FTP server on 127.0.0.1 --------------------------------------------------------

USER, PASSWORD, READER = "stashflow", "ftp-test-password", "reader"


@contextlib.contextmanager
def _serving(root: Path, idle_timeout: float = 300):
    """An FTP server on a free port of 127.0.0.1 serving `root`; USER may write, READER only read."""
    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
    authorizer = DummyAuthorizer()
    authorizer.add_user(USER, PASSWORD, str(root), perm="elradfmwMT")
    authorizer.add_user(READER, PASSWORD, str(root), perm="elr")
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer, "timeout": idle_timeout})
    server = ThreadedFTPServer(("127.0.0.1", 0), handler)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)

    thread = threading.Thread(target=serve, name="ftp-server", daemon=True)
    thread.start()
    try:
        yield server.address[1]
    finally:
        stop.set()
        thread.join(10)
        server.close_all()


@pytest.fixture(scope="module")
def ftp_server(tmp_path_factory):
    """(port, the folder it serves)."""
    served = tmp_path_factory.mktemp("ftp-root")
    with _serving(served) as port:
        yield port, served


def _ftp(ftp_server, cls=FtpStorage, user=USER, folder=None):
    return cls(host="127.0.0.1", port=ftp_server[0], username=user, password=PASSWORD,
               folder=folder or f"t/{uuid.uuid4().hex}")


@pytest.fixture(params=["ftp", "local"])
def backend(request, tmp_path):
    """An empty backend: on the FTP server, or on local files through fsspec."""
    if request.param == "ftp":
        return _ftp(request.getfixturevalue("ftp_server"))
    return LocalFsspec(path=str(tmp_path / "root"))


# -- the kit ----------------------------------------------------------------------------

class TestLocalFsspecConformance(StorageBackendTests):
    """Local files through fsspec, as a file-like store (link or marker) and as an object store."""

    @pytest.fixture(params=["link", "marker", "object-store", "object-store-marker"])
    def backend(self, request, tmp_path):
        if request.param.startswith("object-store"):
            root = f"/kit-{uuid.uuid4().hex}"
            yield (MemoryObjectStore if request.param == "object-store" else MemoryObjectStoreMarker)(
                root_path=root)
            with contextlib.suppress(FileNotFoundError):
                fsspec.filesystem("memory").rm(root, recursive=True)
            return
        cls = LocalFsspec if request.param == "link" else LocalFsspecMarker
        yield cls(path=str(tmp_path / "root"))


# -- atomic writes ------------------------------------------------------------------------

def test_a_rewrite_is_a_temp_file_beside_the_key_renamed_over_it(backend, monkeypatch):
    backend.write("dir/k", b"first")
    fs = backend.filesystem()
    moves = []
    original = fs.mv
    monkeypatch.setattr(fs, "mv", lambda src, dst, **kw: moves.append((src, dst)) or original(src, dst, **kw))
    backend.write("dir/k", b"second")
    with backend.open_write("dir/k") as f:
        f.write(b"third")
    assert backend.read("dir/k") == b"third"
    assert len(moves) == 2
    for src, dst in moves:
        assert dst == backend._path("dir/k")
        folder, _, name = src.rpartition("/")
        assert folder == dst.rpartition("/")[0] and name.startswith(TEMP_PREFIX)
    assert sorted(backend.list()) == ["dir/k"]


def test_readers_never_see_a_partial_record_while_writers_rewrite_it(backend):
    size = 2 * MiB
    versions = [bytes([65 + i]) * size for i in range(4)]
    backend.write("hot", versions[0])
    stop = threading.Event()
    seen, torn, errors = [], [], []

    def writer(n: int) -> None:
        try:
            for i in range(8):
                data = versions[(n + i) % len(versions)]
                if i % 2:
                    backend.write("hot", data)
                else:
                    with backend.open_write("hot") as f:
                        for start in range(0, size, 256 * 1024):
                            f.write(data[start:start + 256 * 1024])
        except Exception as exc:
            errors.append(exc)

    def reader(n: int) -> None:
        try:
            while not stop.is_set():
                if n % 2:
                    data = backend.read("hot")
                else:
                    with backend.open_read("hot") as f:
                        data = f.read()
                (seen if data in versions else torn).append(data[:1] + len(data).to_bytes(4, "big"))
        except Exception as exc:
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    readers = [threading.Thread(target=reader, args=(n,)) for n in range(3)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in readers:
        thread.join()
    assert not errors, errors
    assert not torn, f"readers saw {len(torn)} partial objects: {torn[:3]}"
    assert len(seen) >= 3
    assert sorted(backend.list()) == ["hot"]  # no temp file left behind


def test_a_write_makes_the_missing_folders_of_its_key(backend, request):
    backend.write("a/b/c/record", b"deep")
    disk = (request.getfixturevalue("ftp_server")[1] / backend.folder if isinstance(backend, FtpStorage)
            else Path(backend.path))
    assert (disk / "a" / "b" / "c" / "record").read_bytes() == b"deep"


class _FailsHalfWay(io.RawIOBase):
    """A readable stream that gives 3 MiB and then fails, as a broken source would."""

    def __init__(self):
        self.given = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.given >= 3 * MiB:
            raise OSError("the source failed half way")
        n = min(len(buffer), 3 * MiB - self.given)
        buffer[:n] = b"x" * n
        self.given += n
        return n


@pytest.fixture
def object_store():
    root = f"/objects-{uuid.uuid4().hex}"
    yield MemoryObjectStore(root_path=root)
    with contextlib.suppress(FileNotFoundError):
        fsspec.filesystem("memory").rm(root, recursive=True)


def test_on_an_object_store_bytes_are_one_put_to_the_key(object_store, monkeypatch):
    fs = object_store.filesystem()
    puts, moves = [], []
    put = fs.pipe_file
    monkeypatch.setattr(fs, "pipe_file", lambda path, data, **kw: puts.append(path) or put(path, data, **kw))
    monkeypatch.setattr(fs, "mv", lambda *args, **kw: moves.append(args))
    object_store.write("a/k", b"v")
    assert object_store.create("a/j", b"v") is True
    assert puts == [object_store._path("a/k"), object_store._path("a/j")] and moves == []


@pytest.mark.parametrize("kind", ["ftp", "local", "object-store"])
def test_a_file_that_fails_half_way_publishes_nothing(kind, request, tmp_path):
    if kind == "object-store":
        backend = request.getfixturevalue("object_store")
    elif kind == "ftp":
        backend = _ftp(request.getfixturevalue("ftp_server"))
    else:
        backend = LocalFsspec(path=str(tmp_path / "root"))
    backend.write("k", b"previous")
    with pytest.raises(StorageError, match=r"could not write .*/k: the source failed half way"):
        backend.write("k", io.BufferedReader(_FailsHalfWay()))
    with pytest.raises(StorageError, match=r"could not create .*/new: the source failed half way"):
        backend.create("new", io.BufferedReader(_FailsHalfWay()))
    assert backend.read("k") == b"previous"
    assert sorted(backend.list()) == ["k"]


# -- atomic create ----------------------------------------------------------------------------

def _race(n: int, call) -> list:
    """call(i) in n threads released at once; their results (or exceptions) by i."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_racing_creates_on_ftp_from_many_threads_and_clients_have_one_winner(ftp_server):
    folder = f"t/{uuid.uuid4().hex}"
    backends = [_ftp(ftp_server, folder=folder) for _ in range(3)]  # as on three machines
    for round_ in range(5):
        key = f"race/{round_}"
        results = _race(9, lambda i, key=key: backends[i % 3].create(key, f"creator {i}".encode()))
        assert results.count(True) == 1 and results.count(False) == 8, results
        assert backends[0].read(f"race/{round_}") == f"creator {results.index(True)}".encode()
    assert sorted(backends[0].list()) == [f"race/{i}" for i in range(5)]
    assert sorted(os.listdir(ftp_server[1] / folder / "race")) == [str(i) for i in range(5)]  # no marker left


# FTP's times are whole seconds: an owner file's age by the server's clock is off by up to 1 s.
class QuickFtp(FtpStorage):
    marker_stale = 1.5


class QuickLocalMarker(LocalFsspecMarker):
    marker_stale = 1.5


@pytest.fixture(params=["ftp", "local"])
def marker_backend(request, tmp_path):
    if request.param == "ftp":
        server = request.getfixturevalue("ftp_server")
        return _ftp(server, cls=QuickFtp), server[1]
    return QuickLocalMarker(path=str(tmp_path / "root")), None


def _die_while_creating(backend, patch) -> None:
    """Make this thread's client fail to rename or remove anything, as a dropped connection would."""
    def dropped(*args, **kwargs):
        raise ConnectionResetError("connection reset by peer")

    fs = backend.filesystem()
    for method in ("mv", "rm_file", "rmdir"):
        patch.setattr(fs, method, dropped)


def _left_by_a_dead_creator(backend, monkeypatch, key: str) -> list[str]:
    """The temp keys a creator leaves when its connection drops while it holds the marker."""
    with monkeypatch.context() as patch:
        _die_while_creating(backend, patch)
        with pytest.raises(StorageError, match=f"could not create .*{key}"):
            backend.create(key, b"never published")
    assert not backend.exists(key)
    left = temp_keys(backend)
    assert sorted(k.rpartition("/")[2][:len(TEMP_PREFIX)] for k in left) == [TEMP_PREFIX] * 2
    assert any(MARKER_PREFIX in k for k in left)  # its owner file in the marker folder, and its temp file
    return left


def test_a_marker_left_by_a_dead_creator_is_broken_once_stale(marker_backend, monkeypatch):
    backend, _ = marker_backend
    _left_by_a_dead_creator(backend, monkeypatch, "k")
    started = time.monotonic()
    assert backend.create("k", b"second") is True  # waits out marker_stale, then breaks it
    assert 0.3 < time.monotonic() - started < 10  # it waited: the owner file was fresh
    assert backend.read("k") == b"second"
    assert backend.create("k", b"third") is False
    assert [key for key in backend.list() if MARKER_PREFIX in key] == []


def test_a_marker_whose_owner_file_is_old_is_broken_at_once(marker_backend, monkeypatch):
    backend, served = marker_backend
    left = _left_by_a_dead_creator(backend, monkeypatch, "dir/k")
    disk = served / backend.folder if served else Path(backend.path)
    for key in left:  # its writer died an hour ago
        os.utime(disk / key, (time.time() - 3600, time.time() - 3600))
    patient = (FtpStorage if served else LocalFsspecMarker)(**backend.field_values(reveal_secrets=True))
    assert patient.marker_stale == 60
    started = time.monotonic()
    assert patient.create("dir/k", b"second") is True
    assert time.monotonic() - started < 5
    assert patient.read("dir/k") == b"second"


# -- what a dead writer leaves, and gc ----------------------------------------------------------

def test_gc_reclaims_the_temp_file_of_a_write_that_lost_its_connection(backend, monkeypatch):
    store = ResultStore(backend, "pickle")
    store.write("dead/record", "previous")
    with monkeypatch.context() as patch:
        fs = backend.filesystem()

        def dropped(*args, **kwargs):
            raise ConnectionResetError("connection reset by peer")

        patch.setattr(fs, "mv", dropped)  # the rename never happens ...
        patch.setattr(fs, "rm_file", dropped)  # ... and neither does the clean-up
        with pytest.raises(StorageError, match=rf"{backend.type_slug}: could not write .*dead/record"):
            store.write("dead/record", "never published")
    [orphan] = temp_keys(backend)
    assert orphan.startswith("dead/" + TEMP_PREFIX)
    assert backend.stat(orphan)["mtime"] == pytest.approx(time.time(), abs=120)
    assert store.read("dead/record") == "previous"
    assert list(record_keys(backend)) == ["dead/record"]

    assert gc(backend, expired=False).temp_files == []  # an hour's grace: it may be a live writer's
    assert temp_keys(backend) == [orphan]
    report = gc(backend, expired=False, temp_grace=0)
    assert report.temp_files == [orphan] and report.temp_bytes > 0
    assert temp_keys(backend) == []
    assert sorted(backend.list()) == ["dead/record"]
    assert store.read("dead/record") == "previous"


def test_gc_reclaims_what_a_dead_creator_left_and_its_marker_folder(marker_backend, monkeypatch):
    backend, served = marker_backend
    left = _left_by_a_dead_creator(backend, monkeypatch, "dir/k")
    disk = served / backend.folder if served else Path(backend.path)
    [marker] = {key.rpartition("/")[0] for key in left if MARKER_PREFIX in key}
    assert (disk / marker).is_dir()
    assert sorted(gc(backend, temp_grace=0).temp_files) == left
    assert not (disk / marker).exists()
    assert os.listdir(disk / "dir") == []
    assert backend.create("dir/k", b"now") is True


# -- clients ----------------------------------------------------------------------------------

def test_a_client_that_is_not_thread_safe_is_one_per_thread(ftp_server):
    backend = _ftp(ftp_server)
    mine = backend.filesystem()
    assert backend.filesystem() is mine
    theirs = {}

    def other(n: int) -> None:
        theirs[n] = backend.filesystem()
        assert backend.filesystem() is theirs[n]
        backend.write(f"from/{n}", str(n).encode() * 1000)  # each on its own connection

    threads = [threading.Thread(target=other, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    clients = [mine, *theirs.values()]
    assert len({id(fs) for fs in clients}) == 5
    assert len({fs.ftp.sock.getsockname() for fs in clients}) == 5  # five control connections
    assert [backend.read(f"from/{n}") for n in range(4)] == [str(n).encode() * 1000 for n in range(4)]


class PatientFtp(FtpStorage):
    client_idle = None  # keeps its connection however long it idles


@pytest.mark.parametrize("cls", [FtpStorage, PatientFtp])
def test_a_connection_the_server_dropped_is_replaced(cls, tmp_path, monkeypatch):
    monkeypatch.setattr(FtpStorage, "client_idle", 0.5)
    with _serving(tmp_path, idle_timeout=1) as port:
        backend = cls(host="127.0.0.1", port=port, username=USER, password=PASSWORD, folder="idle")
        backend.write("k", b"v")
        time.sleep(1.6)  # the server has closed the connection
        if cls is PatientFtp:
            with pytest.raises(StorageError, match="could not read"):  # a failure, never a miss
                backend.read("k")
        assert backend.read("k") == b"v"  # connected anew: before use, or after the failure
        assert backend.exists("k")


def test_a_thread_safe_client_is_one_per_process(tmp_path):
    backend = LocalFsspec(path=str(tmp_path))
    seen = []
    thread = threading.Thread(target=lambda: seen.append(backend.filesystem()))
    thread.start()
    thread.join()
    assert seen == [backend.filesystem()] and seen[0] is backend.filesystem()


def test_a_pickled_backend_connects_its_own_clients(tmp_path):
    backend = LocalFsspecMarker(path=str(tmp_path))
    backend.write("k", b"v")
    used = backend.filesystem()
    copy = pickle.loads(pickle.dumps(backend))
    assert "_clients" not in vars(copy)
    assert copy == backend and copy.read("k") == b"v"
    assert copy.filesystem() is not used


def test_create_by_must_be_something_the_file_system_has():
    with pytest.raises(TypeError, match="create_by is 'rename'"):
        type("Bad", (FsspecStorageBackend,), {"create_by": "rename"})
    with pytest.raises(TypeError, match="'link' needs a file-like store"):
        type("Bad", (FsspecStorageBackend,), {"create_by": "link", "atomic_rename": False})


# -- errors -----------------------------------------------------------------------------------

def test_failures_are_storage_errors_naming_the_backend_and_the_key_url(ftp_server):
    folder = f"t/{uuid.uuid4().hex}"
    _ftp(ftp_server, folder=folder).write("present", b"v")
    reader = _ftp(ftp_server, user=READER, folder=folder)
    assert reader.read("present") == b"v"
    url = f"ftp://127.0.0.1:{ftp_server[0]}/{folder}"
    with pytest.raises(StorageError, match=rf"^ftp: could not write {url}/k: 550 ") as caught:
        reader.write("k", b"v")
    with pytest.raises(StorageError, match=rf"^ftp: could not create {url}/present2: 550 "):
        reader.create("present2", io.BytesIO(b"v"))
    with pytest.raises(StorageError, match=rf"^ftp: could not delete {url}/present: 550 "):
        reader.delete("present")
    assert PASSWORD not in str(caught.value)
    assert reader.read("present") == b"v"


def test_missing_keys_and_folders_are_file_not_found(backend):
    backend.write("dir/present", b"12345")
    for key in ("missing", "dir", "dir/present/below"):
        with pytest.raises(FileNotFoundError, match="no object at"):
            backend.stat(key)
        with pytest.raises(FileNotFoundError):
            backend.read(key)
        with pytest.raises(FileNotFoundError):
            backend.open_read(key)
    info = backend.stat("dir/present")
    assert info["size"] == 5 and info["mtime"] == pytest.approx(time.time(), abs=120)


def test_the_backend_class_is_importable_from_storage():
    from stashflow.storage import fsspec as module

    assert FsspecStorageBackend is module.FsspecStorageBackend
