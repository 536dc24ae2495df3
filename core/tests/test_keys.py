"""Result keys are validated once, in the core: bad keys raise InvalidResultKey and
nothing is written anywhere, inside or outside the storage root."""

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stashflow import ResultStore
from stashflow.exceptions import InvalidResultKey
from stashflow.keys import MAX_KEY_BYTES, validate_key, validate_storage_key

BAD_KEYS = {
    "absolute": "/etc/passwd",
    "absolute-root": "/",
    "dotdot": "..",
    "dotdot-prefix": "../escape",
    "dotdot-deep": "a/b/../../../escape",
    "dotdot-last": "a/..",
    "dot": ".",
    "dot-segment": "a/./b",
    "dot-prefix": "./a",
    "empty": "",
    "empty-segment": "a//b",
    "trailing-slash": "a/",
    "backslash": "a\\b",
    "backslash-traversal": "..\\..\\escape",
    "nul": "a\x00b",
    "newline": "a\nb",
    "tab": "a\tb",
    "unit-separator": "a\x1fb",
    "del": "a\x7fb",
    "c1-control": "a\x85b",
    "bidi-override": "a\u202eb",
    "zero-width-space": "a\u200bb",
    "line-separator": "a\u2028b",
    "url-dotdot": "%2e%2e/escape",
    "url-dotdot-upper": "%2E%2E/escape",
    "url-half-encoded": ".%2e/escape",
    "url-double-encoded": "%252e%252e/escape",
    "url-encoded-slashes": "a/..%2f..%2fescape",
    "url-encoded-absolute": "%2fetc%2fpasswd",
    "url-encoded-backslash": "..%5cescape",
    "url-encoded-nul": "a%00b",
    "fullwidth-dots": "\uff0e\uff0e/escape",
    "fullwidth-dots-and-slash": "\uff0e\uff0e\uff0fescape",
    "two-dot-leader": "\u2025/escape",
    "one-dot-leaders": "a/\u2024\u2024/b",
    "small-full-stops": "\ufe52\ufe52/escape",
    "one-dot-leader-alone": "\u2024",
    "fullwidth-backslash": "a\uff3cb",
    "too-long": "k" * (MAX_KEY_BYTES + 1),
    "too-long-utf8": "\u00e9" * (MAX_KEY_BYTES // 2 + 1),
    "segment-too-long": "a/" + "s" * 256,
    "reserved-tmp": ".stashflow-tmp-123-x",
    "reserved-nested": "a/.stashflow.lock",
}
NOT_STRINGS = [b"bytes", None, 1, Path("a")]


def _tree(root: Path) -> dict[str, bytes]:
    """Every file and directory under `root`, with file contents."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), root) + "/"] = b""
        for name in filenames:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


@pytest.fixture
def sandbox(tmp_path):
    """A storage root two levels down, with a sibling file a traversal could hit."""
    root = tmp_path / "outer" / "root"
    root.mkdir(parents=True)
    (tmp_path / "outer" / "escape").write_bytes(b"original")
    store = ResultStore(root, "pickle")
    store.write("existing/record", "kept")
    return tmp_path, store


@pytest.mark.parametrize("key", list(BAD_KEYS.values()) + NOT_STRINGS,
                         ids=[*BAD_KEYS, "bytes", "none", "int", "path"])
def test_bad_key_is_refused_by_every_store_method_and_nothing_is_written(sandbox, key):
    top, store = sandbox
    before = _tree(top)
    for call in (lambda: store.write(key, "payload"),
                 lambda: store.create(key, "payload"),
                 lambda: store.read(key),
                 lambda: store.read_record(key),
                 lambda: store.read_metadata(key),
                 lambda: store.exists(key),
                 lambda: store.delete(key)):
        with pytest.raises(InvalidResultKey) as excinfo:
            call()
        assert excinfo.value.key == key
        assert repr(key) in str(excinfo.value)
    assert _tree(top) == before
    assert store.read("existing/record") == "kept"


@pytest.mark.parametrize("key", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
def test_bad_key_is_refused_on_memory_storage_too(key):
    store = ResultStore("memory://bad-keys", "pickle")
    with pytest.raises(InvalidResultKey):
        store.write(key, 1)
    assert list(store.list()) == []


def test_invalid_result_key_is_a_value_error_that_says_why():
    with pytest.raises(ValueError, match="relative-path step"):
        validate_key("a/../b")
    with pytest.raises(InvalidResultKey, match="decoded as"):
        validate_key("%2e%2e/b")
    with pytest.raises(InvalidResultKey, match="absolute"):
        validate_key("/a")


@pytest.mark.parametrize("prefix", ["../", "/abs", "a/../", "..%2f", "a\x00"])
def test_list_refuses_bad_prefixes(sandbox, prefix):
    _, store = sandbox
    with pytest.raises(InvalidResultKey):
        list(store.list(prefix))


GOOD_KEYS = [
    "plain", "a/b/c.pkl", "v1.2.3", "a..b", "...", "a/...b", ".hidden", "-dash_under",
    "with space", "100%", "%", "%zz", "caf\u00e9/na\u00efve", "\u65e5\u672c/\u8a9e",
    "emoji-\U0001f600", "k" * 255, "\u20ac" * 85, "/".join(["s" * 200] * 5),
]


@pytest.mark.parametrize("key", GOOD_KEYS, ids=[ascii(k)[:24] for k in GOOD_KEYS])
def test_good_keys_round_trip_to_a_file_inside_the_root(tmp_path, key):
    root = tmp_path / "root"
    store = ResultStore(root, "json")
    store.write(key, {"k": key})
    assert store.read(key) == {"k": key}
    assert store.exists(key)
    path = root / key
    assert path.is_file()
    assert os.path.realpath(path).startswith(os.path.realpath(root) + os.sep)
    assert list(store.list()) == [key]
    assert [p for p in _tree(root) if ".stashflow" in p] == []
    store.delete(key)
    assert not store.exists(key)


def test_storage_level_check_admits_reserved_names_but_not_traversal():
    assert validate_storage_key(".stashflow-tmp-1") == ".stashflow-tmp-1"
    for key in ("../x", "/x", "a//b", "%2e%2e/x"):
        with pytest.raises(InvalidResultKey):
            validate_storage_key(key)


TRICKY = st.sampled_from(
    ["/", ".", "..", "\\", "%", "2", "e", "E", "f", "F", "5", "c", "a", "\u00e9", " ", "\x00",
     "\n", "\uff0e", "\uff0f", "\u2024", "\u2025", "\ufe52", "\u202e", ".stashflow", "~"]
)
KEYS = st.one_of(
    st.lists(TRICKY, max_size=12).map("".join),
    st.lists(st.one_of(TRICKY, st.text(max_size=6)), max_size=6).map("/".join),
    st.text(max_size=40),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=KEYS)
def test_any_key_is_refused_or_lands_inside_the_root(key):
    with tempfile.TemporaryDirectory() as top:
        root = Path(top) / "root"
        root.mkdir()
        store = ResultStore(root, "pickle", signing_key=None)
        try:
            store.write(key, 42)
        except InvalidResultKey:
            assert os.listdir(top) == ["root"]
            assert os.listdir(root) == []
            return
        real_root = os.path.realpath(root) + os.sep
        assert os.path.realpath(os.path.join(root, key)).startswith(real_root)
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                assert os.path.realpath(os.path.join(dirpath, name)).startswith(real_root)
        assert store.read(key) == 42
        assert list(store.list()) == [key]
