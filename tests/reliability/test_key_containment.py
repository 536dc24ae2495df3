"""No key and no templated key value writes outside the storage root.

Keys are built from the pieces that have escaped storage roots elsewhere:
'..', absolute paths, percent-encoded dots and slashes (once and twice),
Unicode look-alikes of '.' and '/', NUL and other control characters,
invisible format characters, and very long names. Each is written through
ResultStore (and through task templates); afterwards nothing outside the root
may have changed and anything written must sit inside it, under its own key.
"""

from __future__ import annotations

import os
import uuid

import pytest
from _hostile import KEYS, PIECES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stashflow import task
from stashflow.exceptions import InvalidResultKey, StashflowError, TemplateError
from stashflow.results import ResultStore
from stashflow.storage import memory

PROPERTY = settings(max_examples=400, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def _snapshot(top: str) -> dict[str, bytes]:
    """Every file and directory under `top`, with file contents."""
    found = {}
    for dirpath, dirs, files in os.walk(top):
        for name in dirs:
            found[os.path.join(dirpath, name)] = b"<dir>"
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                found[path] = f.read()
    return found


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """sandbox/outside/... (must never change) and sandbox/deep/er/root (the storage root)."""
    top = tmp_path_factory.mktemp("sandbox")
    (top / "outside").mkdir()
    (top / "outside" / "secret.txt").write_text("do not touch")
    (top / "etc").mkdir()
    (top / "etc" / "passwd").write_text("root:x:0:0")
    root = top / "deep" / "er" / "root"
    root.mkdir(parents=True)
    return top, root


def _check_local_write(top, root, key: str, write) -> None:
    outside_before = {p: v for p, v in _snapshot(str(top)).items()
                      if not p.startswith(str(root) + os.sep)}
    inside_before = set(_snapshot(str(root)))
    try:
        written_key = write(key)
    except (InvalidResultKey, TemplateError):
        written_key = None
    except StashflowError as exc:  # any other refusal must be typed too
        pytest.fail(f"key {key!r}: unexpected {type(exc).__name__}: {exc}")
    after = _snapshot(str(top))
    outside_after = {p: v for p, v in after.items() if not p.startswith(str(root) + os.sep)}
    assert outside_after == outside_before, f"key {key!r} changed something outside the root"
    new = {p for p in after if p.startswith(str(root) + os.sep)} - inside_before
    if written_key is None:
        assert new == set(), f"refused key {key!r} still wrote {new}"
        return
    target = os.path.join(str(root), *written_key.split("/"))
    assert os.path.realpath(target).startswith(os.path.realpath(root) + os.sep)
    assert target in new and os.path.isfile(target)
    assert all(target.startswith(p + os.sep) or p == target for p in new), new
    ResultStore(root).delete(written_key)
    assert not os.path.exists(target)
    for p in sorted(new - {target}, reverse=True):  # directories made for the key
        os.rmdir(p)


@PROPERTY
@given(key=KEYS)
def test_no_result_key_writes_outside_a_local_root(sandbox, key):
    top, root = sandbox
    store = ResultStore(root, serializer="json")

    def write(k: str) -> str:
        store.write(k, {"key": k})
        assert store.read(k) == {"key": k}
        return k

    _check_local_write(top, root, key, write)


@PROPERTY
@given(key=KEYS)
def test_no_result_key_reaches_another_memory_space_or_changes_its_spelling(key):
    name = f"contain-{uuid.uuid4().hex}"
    others = {n: dict(space) for n, space in memory._spaces.items()}
    store = ResultStore(f"memory://{name}", serializer="json")
    try:
        store.write(key, 1)
    except InvalidResultKey:
        assert memory._spaces.get(name, {}) == {}
    else:
        assert list(memory._spaces[name]) == [key]
    assert {n: dict(s) for n, s in memory._spaces.items() if n != name} == others
    memory._spaces.pop(name, None)


@pytest.fixture(scope="module")
def templated(sandbox):
    _, root = sandbox

    @task(result_storage=root, result_storage_key="runs/{parameters[value]}/result",
          result_serializer="json")
    def step(value: str) -> str:
        return "done"

    @task(result_storage=root, result_storage_key="{parameters[value]!s}", result_serializer="json")
    def bare(value: str) -> str:
        return "done"

    return step, bare


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=KEYS, which=st.sampled_from([0, 1]))
def test_no_template_value_writes_outside_the_root(sandbox, templated, value, which):
    top, root = sandbox
    fn = templated[which]

    def run(v: str) -> str:
        assert fn(v) == "done"
        return f"runs/{v}/result" if which == 0 else v

    _check_local_write(top, root, value, run)


def test_the_pieces_themselves_are_refused_or_contained(sandbox):
    _, root = sandbox
    store = ResultStore(root, serializer="json")
    refused = []
    for piece in PIECES:
        try:
            store.write(piece, 1)
        except InvalidResultKey:
            refused.append(piece)
        else:
            store.delete(piece)
    # Every escaping spelling is refused; plain and long-but-legal names are not.
    for plain in ("a", "k", "x" * 255, "~", "C:"):
        assert plain not in refused
    for escaping in ("..", ".", "/", "\\", "\x00", "/etc/passwd", "../../", "%2e%2e",
                     "%252e%252e", "\uff0e\uff0e", "y" * 300, ".stashflow"):
        assert escaping in refused
