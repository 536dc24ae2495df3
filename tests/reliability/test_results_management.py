"""Managing what is stored: ResultStore.records/delete_prefix/gc and `stashflow results ...`."""

from __future__ import annotations

import io
import json
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from stashflow.cli import main
from stashflow.durations import parse_duration
from stashflow.exceptions import StashflowError
from stashflow.maintenance import gc, temp_keys
from stashflow.records import write_record
from stashflow.registry import resolve_serializer
from stashflow.results import ResultStore
from stashflow.storage.memory import MemoryStorage


def write_aged(store: ResultStore, key: str, value, age: timedelta, expires_in=None) -> None:
    """A record created `age` ago (the header's clock is what gc goes by)."""
    created = datetime.now(UTC) - age
    expiration = None if expires_in is None else created + age + expires_in
    with store.storage.open_write(key) as f:
        write_record(f, value, resolve_serializer("json"), created=created, expiration=expiration)


def files(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def store(tmp_path):
    return ResultStore(tmp_path / "results", serializer="json")


# -- Python API ------------------------------------------------------------------------


def test_records_describe_each_record_from_its_header(store, tmp_path):
    written_at = datetime.now(UTC)
    store.write("a/one", {"x": 1})
    store.write("a/two", "y" * 1000, expiration=timedelta(hours=1))
    store.write("b", [1, 2], expiration=-5)
    (tmp_path / "results" / "damaged").write_bytes(b"\x89SFR not a header")
    found = {r.key: r for r in store.records()}
    assert sorted(found) == ["a/one", "a/two", "b", "damaged"]
    one = found["a/one"]
    assert one.size == (tmp_path / "results" / "a" / "one").stat().st_size
    assert one.serializer == "json" and one.expiration is None and not one.is_expired()
    assert abs((one.created - written_at).total_seconds()) < 60
    assert found["a/two"].expiration - found["a/two"].created == timedelta(hours=1)
    assert found["b"].is_expired()
    assert found["damaged"].metadata is None and "truncated header" in found["damaged"].problem
    assert sorted(r.key for r in store.records("a/")) == ["a/one", "a/two"]


class CountingMemory(MemoryStorage):
    """Memory storage that counts the bytes handed out by open_read."""

    type_slug = "counting-memory"
    url_schemes = ()
    bytes_read = 0

    def open_read(self, key: str):
        outer = self

        class Counting(io.BytesIO):
            def read(self, n=-1):
                data = super().read(n)
                outer.bytes_read += len(data)
                return data

        return Counting(self.read(key))


def test_listing_and_gc_read_headers_only_never_payloads():
    storage = CountingMemory(name="counting-headers")
    storage.clear()
    store = ResultStore(storage, serializer="json")
    for i in range(5):
        store.write(f"big/{i}", "z" * 2_000_000, expiration=-1 if i % 2 else None)
    storage.bytes_read = 0
    assert len(list(store.records())) == 5
    assert storage.bytes_read < 5 * 400
    storage.bytes_read = 0
    report = store.gc()
    assert sorted(report.removed) == ["big/1", "big/3"]
    assert storage.bytes_read < 10 * 400  # each record examined, removals re-examined


def test_gc_removes_expired_records_and_keeps_the_rest(store):
    store.write("fresh", 1, expiration=timedelta(hours=1))
    store.write("stale", 2, expiration=-1)
    store.write("forever", 3)
    report = store.gc()
    assert report.removed == ["stale"] and report.examined == 3
    assert sorted(store.list()) == ["forever", "fresh"]
    assert report.removed_bytes > 0 and "removed 1 records" in report.summary()


def test_gc_older_than_goes_by_the_created_time_in_the_header(store):
    write_aged(store, "week-old", 1, timedelta(days=7, minutes=1))
    write_aged(store, "day-old", 2, timedelta(days=1, minutes=1))
    write_aged(store, "new", 3, timedelta(0))
    assert store.gc(expired=False, older_than="7d").removed == ["week-old"]
    assert store.gc(expired=False, older_than=timedelta(hours=12)).removed == ["day-old"]
    assert store.gc(expired=False, older_than=3600).removed == []
    assert list(store.list()) == ["new"]


def test_gc_dry_run_reports_everything_and_deletes_nothing(store, tmp_path):
    store.write("stale", 2, expiration=-1)
    write_aged(store, "old", 1, timedelta(days=30))
    with store.storage.open_write("orphan-maker") as f:
        f.write(b"half")
        [tmp] = temp_keys(store.storage)
        before = files(tmp_path / "results")
        report = store.gc(older_than="7d", dry_run=True, temp_grace=0)
        assert report.dry_run and sorted(report.removed) == ["old", "stale"]
        assert report.temp_files == [tmp]
        assert files(tmp_path / "results") == before
        assert "would remove 2 records" in report.summary()


def test_gc_reports_progress_and_limits_itself_to_a_prefix(store):
    for i in range(7):
        store.write(f"p/{i}", i, expiration=-1)
    store.write("q", 0, expiration=-1)
    calls = []
    report = store.gc(progress=lambda done, total: calls.append((done, total)), prefix="p/")
    assert calls == [(i, 7) for i in range(1, 8)]
    assert len(report.removed) == 7 and list(store.list()) == ["q"]


class RewritingMemory(MemoryStorage):
    """Rewrites a key with a fresh record right after gc has first looked at it."""

    type_slug = "rewriting-memory"
    url_schemes = ()
    fresh: bytes = b""
    opened = 0

    def open_read(self, key: str):
        f = super().open_read(key)
        self.opened += 1
        if self.opened == 1:
            self.write(key, self.fresh)
        return f


def test_gc_keeps_a_record_rewritten_between_its_check_and_its_delete():
    storage = RewritingMemory(name="rewriting")
    storage.clear()
    store = ResultStore(storage, serializer="json")
    store.write("k", "fresh value")
    storage.fresh = storage.read("k")
    store.write("k", "expired value", expiration=-1)
    report = store.gc()
    assert report.removed == []
    assert store.read("k") == "fresh value"


def test_delete_prefix_removes_only_that_prefix_and_refuses_an_empty_one(store):
    for key in ("runs/a", "runs/b/c", "runsx", "other"):
        store.write(key, key)
    assert store.delete_prefix("runs/", dry_run=True) == ["runs/a", "runs/b/c"]
    assert len(list(store.list())) == 4
    assert store.delete_prefix("runs/") == ["runs/a", "runs/b/c"]
    assert sorted(store.list()) == ["other", "runsx"]
    with pytest.raises(StashflowError, match="empty prefix"):
        store.delete_prefix("")
    with pytest.raises(StashflowError):
        store.delete_prefix("../")


@pytest.mark.parametrize("text, expected", [
    ("30m", timedelta(minutes=30)), ("12h", timedelta(hours=12)), ("7d", timedelta(days=7)),
    ("45s", timedelta(seconds=45)), ("2w", timedelta(weeks=2)), ("1d12h", timedelta(hours=36)),
    ("1.5h", timedelta(minutes=90)), (" 7D ", timedelta(days=7)), ("0s", timedelta(0)),
])
def test_durations_parse(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("junk", ["", "7", "d", "7x", "-1d", "7 d", "1d-2h", "abc", "1e3s", "h1"])
def test_junk_durations_are_refused_with_a_clear_message(junk):
    with pytest.raises(ValueError, match="is not a duration: use a number and a unit"):
        parse_duration(junk)


def test_gc_on_memory_storage_needs_no_temp_file_support():
    store = ResultStore("memory://gc-memory", serializer="json")
    store.write("x", 1, expiration=-1)
    assert gc(store.storage, temp_grace=0).removed == ["x"]


# -- the command line --------------------------------------------------------------------


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def test_results_ls_shows_key_size_serializer_created_and_expiry(store, tmp_path):
    store.write("runs/a", {"v": 1})
    store.write("runs/b", [2], expiration=-1)
    store.write("other", 3, expiration=timedelta(days=1))
    where = str(tmp_path / "results")
    result = cli("results", "ls", "--storage", where)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KEY", "SIZE", "SERIALIZER", "CREATED", "EXPIRES"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert sorted(rows) == ["other", "runs/a", "runs/b"]
    size = (tmp_path / "results" / "runs" / "a").stat().st_size
    assert rows["runs/a"][1:3] == [str(size), "json"] and rows["runs/a"][4] == "never"
    assert rows["runs/b"][-1] == "(expired)"
    assert result.stderr.strip() == "3 records"
    prefixed = cli("results", "ls", "--storage", f"file://{where}", "--prefix", "runs/")
    assert [line.split()[0] for line in prefixed.stdout.splitlines()[1:]] == ["runs/a", "runs/b"]
    as_json = [json.loads(line) for line in
               cli("results", "ls", "--storage", where, "--json").stdout.splitlines()]
    assert {r["key"]: r["expired"] for r in as_json} == {"other": False, "runs/a": False,
                                                         "runs/b": True}
    assert all(r["serializer"] == "json" and r["size"] > 0 for r in as_json)


def test_results_commands_use_the_default_storage_and_take_slugs(stashflow_home):
    ResultStore(serializer="json").write("in-default", 1)
    assert "in-default" in cli("results", "ls").stdout
    assert cli("block", "create", "local-file-system", "mine", "--set",
               f"basepath={stashflow_home / 'storage'}").exit_code == 0
    assert "in-default" in cli("results", "ls", "--storage", "local-file-system/mine").stdout
    missing = cli("results", "ls", "--storage", "local-file-system/absent")
    assert missing.exit_code == 1 and "no block saved as 'local-file-system/absent'" in missing.output


def test_results_show_prints_metadata_and_the_value_only_when_asked(store, tmp_path):
    store.write("k", {"payload": "PAYLOAD-MARKER"}, expiration=timedelta(hours=2))
    where = str(tmp_path / "results")
    result = cli("results", "show", "k", "--storage", where)
    assert result.exit_code == 0, result.output
    assert "PAYLOAD-MARKER" not in result.output
    assert "serializer: json" in result.output and "signed: no" in result.output
    assert f"size: {(tmp_path / 'results' / 'k').stat().st_size} bytes" in result.output
    with_value = cli("results", "show", "k", "--storage", where, "--value")
    assert "{'payload': 'PAYLOAD-MARKER'}" in with_value.output
    missing = cli("results", "show", "nope", "--storage", where)
    assert missing.exit_code == 1 and "no result stored under key 'nope'" in missing.output
    bad = cli("results", "show", "../etc/passwd", "--storage", where)
    assert bad.exit_code == 1 and "invalid result key" in bad.output


def test_results_rm_by_key_and_by_prefix(store, tmp_path):
    for key in ("runs/a", "runs/b", "keep"):
        store.write(key, key)
    where = str(tmp_path / "results")
    assert cli("results", "rm", "runs/a", "--storage", where).stdout == "Removed runs/a\n"
    assert sorted(store.list()) == ["keep", "runs/b"]
    gone = cli("results", "rm", "runs/a", "--storage", where)
    assert gone.exit_code == 1 and "No record at runs/a" in gone.stderr
    dry = cli("results", "rm", "--prefix", "runs/", "--storage", where, "--dry-run")
    assert dry.stdout == "Would remove runs/b\n" and sorted(store.list()) == ["keep", "runs/b"]
    assert cli("results", "rm", "--prefix", "runs/", "--storage", where).exit_code == 0
    assert list(store.list()) == ["keep"]
    assert cli("results", "rm", "--storage", where).exit_code == 2  # neither
    assert cli("results", "rm", "keep", "--prefix", "k", "--storage", where).exit_code == 2
    empty = cli("results", "rm", "--prefix", "", "--storage", where)
    assert empty.exit_code == 1 and "empty prefix" in empty.output
    assert list(store.list()) == ["keep"]


def test_results_gc_dry_run_then_for_real(store, tmp_path):
    store.write("stale", 1, expiration=-1)
    write_aged(store, "old", 2, timedelta(hours=13))
    store.write("fresh", 3)
    where = str(tmp_path / "results")
    before = files(tmp_path / "results")
    dry = cli("results", "gc", "--storage", where, "--expired", "--older-than", "12h", "--dry-run",
              "-v")
    assert dry.exit_code == 0, dry.output
    assert files(tmp_path / "results") == before
    assert "would remove old" in dry.stdout and "would remove stale" in dry.stdout
    assert dry.stdout.splitlines()[-1].startswith("Examined 3 records; would remove 2 records")
    # --older-than alone removes only old records; expired ones need --expired too.
    only_old = cli("results", "gc", "--storage", where, "--older-than", "12h")
    assert sorted(store.list()) == ["fresh", "stale"], only_old.output
    assert cli("results", "gc", "--storage", where).exit_code == 0  # default: expired
    assert list(store.list()) == ["fresh"]


@pytest.mark.parametrize("junk", ["7x", "soon", "-1d", "12"])
def test_results_gc_refuses_junk_durations(store, tmp_path, junk):
    store.write("stale", 1, expiration=-1)
    result = cli("results", "gc", "--storage", str(tmp_path / "results"), "--older-than", junk)
    assert result.exit_code == 2
    assert f"Invalid value for '--older-than': {junk!r} is not a duration" in result.output
    assert list(store.list()) == ["stale"]


def test_results_gc_shows_a_progress_bar_on_long_runs_and_reclaims_temp_files(store, tmp_path):
    for i in range(250):
        store.write(f"many/{i:03d}", i, expiration=-1 if i % 5 == 0 else None)
    doomed_bytes = sum(store.storage.stat(f"many/{i:03d}")["size"] for i in range(0, 250, 5))
    orphan = tmp_path / "results" / "many" / ".stashflow-tmp-99999-1-1-000"
    orphan.write_bytes(b"left by a dead writer")
    os.utime(orphan, (time.time() - 7200,) * 2)
    result = cli("results", "gc", "--storage", str(tmp_path / "results"))
    assert result.exit_code == 0, result.output
    assert "Examining records" in result.stderr
    assert result.stdout.strip() == (
        f"Examined 250 records; removed 50 records ({doomed_bytes / 1024:.1f} KiB) "
        "and 1 orphaned temp files (21 bytes).")
    assert not orphan.exists()
    assert len(list(store.list())) == 200
    assert not [p for p in (tmp_path / "results").rglob(".stashflow-tmp-*")]


class ForbiddingMemory(MemoryStorage):
    """Memory storage where the key "locked" cannot be opened (a permission problem)."""

    type_slug = "forbidding-memory"
    url_schemes = ()

    def open_read(self, key: str):
        if key == "locked":
            raise PermissionError(13, "Permission denied", key)
        return super().open_read(key)


def test_gc_refuses_negative_ages_and_keeps_unreadable_records():
    storage = ForbiddingMemory(name="forbidding")
    storage.clear()
    store = ResultStore(storage, serializer="json")
    store.write("stale", 1, expiration=-1)
    store.write("locked", 2, expiration=-1)
    with pytest.raises(ValueError, match="older_than must not be negative"):
        store.gc(older_than=timedelta(hours=-1))
    with pytest.raises(ValueError, match="temp_grace must not be negative"):
        store.gc(temp_grace=-5)
    assert sorted(store.list()) == ["locked", "stale"]
    found = {r.key: r for r in store.records()}
    assert found["locked"].metadata is None and "cannot be read" in found["locked"].problem
    report = store.gc()
    assert report.removed == ["stale"] and report.unreadable == ["locked"]
    assert list(store.list()) == ["locked"]
    assert "1 records have a damaged or unreadable header and were kept" in report.summary()


def test_an_absurdly_long_duration_is_a_clear_error_not_an_overflow():
    with pytest.raises(ValueError, match="too long a duration"):
        parse_duration("99999999999999d")
    result = cli("results", "gc", "--older-than", "99999999999999d")
    assert result.exit_code == 2 and "too long a duration" in result.output
