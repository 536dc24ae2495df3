"""Hostile entries planted in a local storage root, through ResultStore, locks and the CLI.

Links (to a file, to a directory) leading outside the root, FIFOs at keys, a
`.stashflow` that is a link, names that are not UTF-8 or hold a control
character. Nothing from outside the root is served, listed or removed, nothing
blocks, nothing is created outside, and `results ls` / `rm --prefix` / `gc` do
everything else and count what they skipped. Directories stashflow creates are
never writable by others, whatever the umask.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from click.testing import CliRunner
from stashflow import settings
from stashflow.blocks import Block
from stashflow.cli import main
from stashflow.exceptions import LockError, StorageEntryRefused
from stashflow.locking import FileLockManager, default_lock_manager
from stashflow.maintenance import printable
from stashflow.results import ResultStore
from stashflow.storage.memory import MemoryStorage

MARKER = "FROM-OUTSIDE-THE-ROOT"


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real `stashflow` in a child process: a hang fails the test instead of stalling it."""
    return subprocess.run([sys.executable, "-m", "stashflow", *args], capture_output=True,
                          text=True, timeout=timeout, errors="backslashreplace")


@pytest.fixture
def planted(tmp_path):
    """results/ with two records, and links to outside/ (which holds a valid record)."""
    root, outside = tmp_path / "results", tmp_path / "outside"
    store = ResultStore(root, serializer="json")
    store.write("mine", "mine")
    store.write("sub/mine", "sub mine")
    ResultStore(outside, serializer="json").write("secret", MARKER)
    (root / "file-link").symlink_to(outside / "secret")
    (root / "dir-link").symlink_to(outside)
    (root / "sub" / "file-link").symlink_to(outside / "secret")
    (root / "sub" / "dir-link").symlink_to(outside)
    return store, root, outside


OUTSIDE_KEYS = ["file-link", "dir-link/secret", "sub/file-link", "sub/dir-link/secret"]


@pytest.mark.parametrize("key", OUTSIDE_KEYS)
def test_result_store_serves_nothing_through_a_link_leading_outside(planted, key):
    store, _, _ = planted
    for read in (store.read, store.read_record, store.read_metadata):
        with pytest.raises(StorageEntryRefused, match="symbolic link leading outside"):
            read(key)
    assert store.exists(key) is False
    assert store.read("sub/mine") == "sub mine"


def test_records_and_results_ls_list_nothing_from_outside(planted):
    store, root, _ = planted
    listing = store.records()
    assert sorted(r.key for r in listing) == ["mine", "sub/mine"]
    assert sorted(e.name for e in listing.skipped) == [
        "dir-link", "file-link", "sub/dir-link", "sub/file-link"]
    assert {e.reason for e in listing.skipped} == {f"is a symbolic link leading outside {root}"}
    for prefix in ("dir-link/", "sub/dir-link/"):
        assert [r.key for r in store.records(prefix)] == []
    result = cli("results", "ls", "--storage", str(root))
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == ["mine", "sub/mine"]
    assert "4 entries skipped: names stashflow cannot handle or not regular files; see --json" in (
        result.stderr)
    inside_link = cli("results", "ls", "--storage", str(root), "--prefix", "dir-link/")
    assert inside_link.exit_code == 0 and inside_link.stdout.splitlines()[1:] == []
    assert MARKER not in result.output + inside_link.output


@pytest.mark.parametrize("key", ["file-link", "dir-link/secret"])
def test_results_show_refuses_a_link_leading_outside(planted, key):
    _, root, _ = planted
    for extra in ([], ["--value"]):
        result = cli("results", "show", key, "--storage", str(root), *extra)
        assert result.exit_code == 1
        assert "symbolic link leading outside" in result.output and "remove it" in result.output
        assert "serializer:" not in result.output and MARKER not in result.output


def test_rm_and_gc_never_remove_anything_outside(planted):
    _, root, outside = planted
    before = sorted(p.name for p in outside.iterdir())
    assert cli("results", "rm", "dir-link/secret", "--storage", str(root)).exit_code == 1
    assert cli("results", "gc", "--storage", str(root), "--older-than", "0s").exit_code == 0
    assert sorted(p.name for p in outside.iterdir()) == before
    assert ResultStore(outside).read("secret") == MARKER


def _within_a_second(call):
    box = {}

    def run():
        try:
            box["value"] = call()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(1.0)
    return not thread.is_alive(), box.get("error", box.get("value"))


def test_a_fifo_at_a_key_is_a_typed_error_at_once_and_maintenance_passes_it_by(tmp_path):
    root = tmp_path / "results"
    store = ResultStore(root, serializer="json")
    store.write("stale", 1, expiration=-1)
    os.mkfifo(root / "pipe")
    try:
        for read in (store.read, store.read_record, store.read_metadata):
            finished, outcome = _within_a_second(lambda read=read: read("pipe"))
            assert finished, f"{read.__name__} blocked on a FIFO"
            assert isinstance(outcome, StorageEntryRefused)
            assert "is a FIFO, not a regular file" in str(outcome)
        assert store.exists("pipe") is False
        show = run_cli("results", "show", "pipe", "--storage", str(root), timeout=30)
        assert show.returncode == 1 and "is a FIFO, not a regular file" in show.stderr
        listed = run_cli("results", "ls", "--storage", str(root), timeout=30)
        assert listed.returncode == 0 and "1 entries skipped" in listed.stderr
        collected = run_cli("results", "gc", "--storage", str(root), "-v", timeout=30)
        assert collected.returncode == 0, collected.stderr
        assert "removed stale" in collected.stdout
        assert "skipped pipe: is a FIFO, not a regular file" in collected.stdout
    finally:
        with contextlib.suppress(OSError):  # free a reader stuck opening it
            os.close(os.open(root / "pipe", os.O_WRONLY | os.O_NONBLOCK))
    assert stat.S_ISFIFO(os.lstat(root / "pipe").st_mode)  # reported, not removed


# -- locks ------------------------------------------------------------------------------


@pytest.mark.parametrize("plant", [".stashflow", ".stashflow/locks"])
def test_a_planted_link_cannot_move_the_lock_files_outside(tmp_path, plant):
    root, outside = tmp_path / "results", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    if plant == ".stashflow/locks":
        (root / ".stashflow").mkdir()
    (root / plant).symlink_to(outside)
    store = ResultStore(root)
    for make in (lambda: FileLockManager(store.storage), lambda: default_lock_manager(store)):
        with pytest.raises(StorageEntryRefused, match="is a symbolic link"):
            make()
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("ready", [False, True], ids=["empty-target", "target-with-locks"])
def test_a_link_planted_after_the_lock_manager_was_made_is_refused_too(tmp_path, ready):
    root, outside = tmp_path / "results", tmp_path / "outside"
    outside.mkdir()
    if ready:  # the link leads to a directory that has a locks/ to open
        (outside / "locks").mkdir()
    before = sorted(os.walk(outside))
    manager = FileLockManager(ResultStore(root).storage)
    with manager.lock("k"):
        pass
    os.rename(root / ".stashflow", tmp_path / "moved-away")
    (root / ".stashflow").symlink_to(outside)
    with pytest.raises((LockError, StorageEntryRefused), match=r"symbolic link|a link was planted"):
        manager.acquire("k", "me")
    assert sorted(os.walk(outside)) == before


def test_a_lock_file_planted_as_a_link_is_refused_and_its_target_untouched(tmp_path):
    root, outside = tmp_path / "results", tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"keep me")
    manager = FileLockManager(ResultStore(root).storage)
    os.symlink(outside / "victim", manager.path_for("k"))
    with pytest.raises(LockError, match="is a symbolic link"):
        manager.acquire("k", "me")
    assert (outside / "victim").read_bytes() == b"keep me"


# -- modes ------------------------------------------------------------------------------


@pytest.fixture
def umask0():
    old = os.umask(0)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


class Scratch(Block):
    type_slug = "scratch-for-modes"
    path: str = ""


def test_what_stashflow_creates_is_private_whatever_the_umask(tmp_path, monkeypatch, umask0):
    home = tmp_path / "fresh" / "home"
    monkeypatch.setenv("STASHFLOW_HOME", str(home))
    store = ResultStore(serializer="json")  # the default storage, $STASHFLOW_HOME/storage
    store.write("a/b/k", 1)
    assert _mode(tmp_path / "fresh") == 0o700 and _mode(home) == 0o700
    assert _mode(home / "storage") == 0o700
    assert _mode(home / "storage" / "a") == 0o755 and _mode(home / "storage" / "a" / "b") == 0o755
    assert _mode(home / "storage" / "a" / "b" / "k") & 0o022 == 0
    with FileLockManager(store.storage).lock("k"):
        pass
    assert _mode(home / "storage" / ".stashflow") == 0o700
    assert _mode(home / "storage" / ".stashflow" / "locks") == 0o700
    with FileLockManager(MemoryStorage(name="modes")).lock("k"):
        pass
    assert _mode(home / "locks") == 0o700
    settings.set_values({"STASHFLOW_RESULTS_PERSIST_BY_DEFAULT": "true"})
    assert _mode(home / "profiles.toml") == 0o600
    Scratch(path="x").save("one")
    assert _mode(home / "blocks") == 0o700 and _mode(home / "blocks" / "scratch-for-modes") == 0o700
    assert _mode(home / "blocks" / "scratch-for-modes" / "one.json") == 0o600


def test_profiles_and_blocks_make_a_missing_home_private(tmp_path, monkeypatch, umask0):
    for i, make in enumerate((
            lambda: settings.set_values({"STASHFLOW_RESULTS_PERSIST_BY_DEFAULT": "true"}),
            lambda: Scratch(path="x").save("one"))):
        home = tmp_path / f"home{i}" / "nested"
        monkeypatch.setenv("STASHFLOW_HOME", str(home))
        settings._profile_cache = None
        make()
        assert _mode(tmp_path / f"home{i}") == 0o700 and _mode(home) == 0o700


def test_a_root_given_explicitly_is_made_0755_not_private(tmp_path, umask0):
    ResultStore(tmp_path / "shared" / "results").write("k", 1)
    assert _mode(tmp_path / "shared") == 0o755 and _mode(tmp_path / "shared" / "results") == 0o755


# -- names stashflow cannot handle --------------------------------------------------------


@pytest.fixture
def hostile(tmp_path):
    """5 expired records, 1 live one, and 2 copies of an expired record under bad names."""
    root = tmp_path / "results"
    store = ResultStore(root, serializer="json")
    for i in range(5):
        store.write(f"old/{i}", i, expiration=-1)
    store.write("keep", "kept", expiration=timedelta(days=1))
    expired = (root / "old" / "0").read_bytes()
    with open(os.path.join(os.fsencode(root), b"bad-\xff\xfe-name"), "wb") as f:
        f.write(expired)
    (root / "ctl\x1b[31mname").write_bytes(expired)
    return store, root


SHOWN = {"bad-\\xff\\xfe-name", "ctl\\x1b[31mname"}


def _clean(text: str) -> bool:
    """No raw control character (but newline) and no undecodable byte in `text`."""
    return all(ch == "\n" or ch.isprintable() for ch in text)


def test_records_and_ls_list_the_good_records_and_count_the_bad_names(hostile):
    store, root = hostile
    listing = store.records()
    assert sorted(r.key for r in listing) == ["keep", *(f"old/{i}" for i in range(5))]
    assert {e.shown for e in listing.skipped} == SHOWN
    assert all(e.reason.startswith("is not a valid key") for e in listing.skipped)
    result = cli("results", "ls", "--storage", str(root))
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == [
        "keep", *(f"old/{i}" for i in range(5))]
    assert result.stderr.splitlines() == [
        "6 records",
        "2 entries skipped: names stashflow cannot handle or not regular files; see --json"]
    as_json = [json.loads(line) for line in
               cli("results", "ls", "--storage", str(root), "--json").stdout.splitlines()]
    assert len(as_json) == 8
    assert {r["key"] for r in as_json if r["skipped"]} == SHOWN
    assert all(_clean(r["key"]) for r in as_json)


def test_gc_removes_every_expired_record_and_reports_the_bad_names(hostile):
    store, root = hostile
    dry = cli("results", "gc", "--storage", str(root), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert sorted(dry.stdout.splitlines()[:-1]) == [f"would remove old/{i}" for i in range(5)]
    assert sorted(store.list()) == ["keep", *(f"old/{i}" for i in range(5))]
    result = cli("results", "gc", "--storage", str(root))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Examined 6 records; removed 5 records")
    assert result.stdout.rstrip().endswith(
        "; 2 entries skipped: names stashflow cannot handle or not regular files.")
    assert sorted(store.list()) == ["keep"]
    assert len(os.listdir(root)) == 4  # keep, old/, and the two files gc cannot name
    verbose = cli("results", "gc", "--storage", str(root), "-v")
    assert {line.split(": ")[0] for line in verbose.stdout.splitlines()[:-1]} == {
        f"skipped {name}" for name in SHOWN}
    assert _clean(verbose.output)


def test_rm_by_prefix_removes_the_rest_and_counts_the_bad_names(hostile):
    store, root = hostile
    (root / "old" / "bad\x7fname").write_bytes(b"x")
    result = cli("results", "rm", "--prefix", "old/", "--storage", str(root))
    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.splitlines()) == [f"Removed old/{i}" for i in range(5)]
    assert "Skipped old/bad\\x7fname: is not a valid key" in result.stderr
    assert result.stderr.rstrip().endswith(
        "1 entries skipped: names stashflow cannot handle or not regular files.")
    assert os.listdir(root / "old") == ["bad\x7fname"]
    report = store.delete_prefix("old/")
    assert report == [] and [e.shown for e in report.skipped] == ["old/bad\\x7fname"]


def test_rm_by_key_reports_a_bad_key_and_still_removes_the_others(hostile):
    store, root = hostile
    result = cli("results", "rm", "old/0", "../escape", "old/1", "--storage", str(root))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["Removed old/0", "Removed old/1"]
    assert "Skipped ../escape: is not a valid key" in result.stderr
    assert sorted(store.list()) == ["keep", "old/2", "old/3", "old/4"]


def test_maintenance_api_reports_skipped_entries(hostile):
    store, _ = hostile
    report = store.gc(dry_run=True)
    assert sorted(report.removed) == [f"old/{i}" for i in range(5)]
    assert {e.shown for e in report.skipped} == SHOWN
    assert "2 entries skipped" in report.summary()
    assert all(_clean(str(e)) for e in report.skipped)


def test_printable_escapes_what_a_terminal_would_act_on():
    assert printable("plain/key-1.txt") == "plain/key-1.txt"
    assert printable("caf\u00e9") == "caf\u00e9"
    assert printable("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert printable("bad-\udcff") == "bad-\\xff"
    assert printable("rtl\u202eoverride\u2028") == "rtl\\u202eoverride\\u2028"


@pytest.mark.parametrize("plant", ["fifo", "link out"])
@pytest.mark.parametrize("isolation", [None, "SERIALIZABLE"])
def test_a_task_whose_record_is_a_planted_entry_runs_and_writes_a_real_record(tmp_path, plant,
                                                                               isolation):
    import warnings

    from stashflow import task
    from stashflow.cache_policies import INPUTS

    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    ResultStore(outside, "pickle").write("answer", "the outsider's value")
    if plant == "fifo":
        os.mkfifo(root / "answer")
    else:
        os.symlink(outside / "answer", root / "answer")
    calls = []

    @task(cache_policy=INPUTS.configure(isolation_level=isolation), result_storage=str(root),
          result_storage_key="answer")
    def answer(x):
        calls.append(x)
        return x * 2

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert answer(21) == 42
    assert calls == [21]
    # Outside a transaction the read fails and says so; a transaction finds no usable record.
    assert isolation or any("unusable" in str(w.message) for w in caught)
    assert (root / "answer").is_file() and not (root / "answer").is_symlink()
    assert ResultStore(outside).read("answer") == "the outsider's value"
    assert answer(21) == 42 and calls == [21]
