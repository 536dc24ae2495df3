"""Blocks: saved storage configurations, through the CLI and from Python."""

import json
import os
import pickle
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from stashflow import ResultStore, SecretStr, hookimpl, plugins
from stashflow.blocks import Block, block_path, list_blocks, one_setting
from stashflow.cli import main
from stashflow.exceptions import BlockNotFound, StashflowError
from stashflow.registry import load_block
from stashflow.storage.memory import MemoryStorage
from stashflow_local import LocalFileSystem


class VaultStorage(MemoryStorage):
    """A test block type with a secret field."""

    type_slug = "vault-store"
    url_schemes = ()

    token: SecretStr | None = None
    retries: int = 3


class VaultKey(Block):
    """A block held by another (as credentials are by a bucket); the class alone loads it."""

    type_slug = "vault-key"

    secret: SecretStr | None = None
    scope: str = "all"


class KeyedStorage(MemoryStorage):
    """A test block type with a Block-typed field."""

    type_slug = "keyed-store"
    url_schemes = ()

    key: VaultKey | None = None


class VaultPlugin:
    @hookimpl
    def register_storage_types(self, register):
        register(VaultStorage)
        register(KeyedStorage)


@pytest.fixture
def vault():
    plugins.pm.register(VaultPlugin(), name="vault-test")
    yield
    plugins.reset()


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _all_files(top) -> dict[str, bytes]:
    return {os.path.join(d, f): Path(d, f).read_bytes() for d, _, fs in os.walk(top) for f in fs}


def test_create_ls_inspect_use_and_delete_a_local_block(stashflow_home, tmp_path):
    results = tmp_path / "results"
    result = cli("block", "create", "local-file-system", "dev", "--set", f"basepath={results}")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Saved local-file-system/dev."
    path = stashflow_home / "blocks" / "local-file-system" / "dev.json"
    assert _mode(path) == 0o600
    assert json.loads(path.read_text()) == {
        "type": "local-file-system", "fields": {"basepath": str(results), "fsync": False}}
    assert cli("block", "ls").output.splitlines() == ["local-file-system/dev"]
    inspected = cli("block", "inspect", "local-file-system/dev").output
    assert f"basepath = {results}" in inspected and "fsync = False" in inspected

    store = ResultStore("local-file-system/dev")
    assert store.storage == LocalFileSystem(basepath=str(results))
    store.write("a/k", 1)
    assert (results / "a" / "k").is_file()
    assert LocalFileSystem.load("dev").basepath == str(results)

    result = cli("block", "delete", "local-file-system/dev")
    assert result.exit_code == 0 and "Deleted local-file-system/dev." in result.output
    assert not path.exists()
    assert cli("block", "ls").output.startswith("No saved blocks")
    with pytest.raises(BlockNotFound, match="local-file-system/dev"):
        ResultStore("local-file-system/dev")
    result = cli("block", "delete", "local-file-system/dev")
    assert result.exit_code == 1 and "no block saved as 'local-file-system/dev'" in result.output


def test_saving_twice_without_overwrite_is_refused_and_nothing_is_half_written(stashflow_home,
                                                                               tmp_path):
    assert cli("block", "create", "local-file-system", "dev", "--set",
               f"basepath={tmp_path / 'first'}").exit_code == 0
    before = _all_files(stashflow_home)
    result = cli("block", "create", "local-file-system", "dev", "--set",
                 f"basepath={tmp_path / 'second'}")
    assert result.exit_code == 1
    assert "already saved as 'local-file-system/dev'" in result.output
    assert _all_files(stashflow_home) == before
    with pytest.raises(StashflowError, match="overwrite=True"):
        LocalFileSystem(basepath=str(tmp_path / "third")).save("dev")
    assert _all_files(stashflow_home) == before
    result = cli("block", "create", "local-file-system", "dev", "--overwrite", "--set",
                 f"basepath={tmp_path / 'second'}")
    assert result.exit_code == 0, result.output
    path = stashflow_home / "blocks" / "local-file-system" / "dev.json"
    assert _mode(path) == 0o600
    assert LocalFileSystem.load("dev").basepath == str(tmp_path / "second")
    assert os.listdir(path.parent) == ["dev.json"]


def test_secret_fields_are_never_shown(stashflow_home, vault):
    result = cli("block", "create", "vault-store", "v", "--set", "token=hunter2",
                 "--set", "retries=5", "--set", "name=vault-space")
    assert result.exit_code == 0, result.output
    inspected = cli("block", "inspect", "vault-store/v")
    assert inspected.exit_code == 0
    assert "hunter2" not in inspected.output
    assert "token = **********" in inspected.output
    assert "retries = 5" in inspected.output
    types = cli("block", "types").output
    assert "vault-store" in types and "token*" in types and "hunter2" not in types
    path = stashflow_home / "blocks" / "vault-store" / "v.json"
    assert _mode(path) == 0o600
    assert json.loads(path.read_text())["fields"]["token"] == "hunter2"  # only here
    blk = load_block("vault-store/v")
    assert isinstance(blk.token, SecretStr) and blk.token.get_secret_value() == "hunter2"
    assert blk.retries == 5
    for shown in (repr(blk), str(blk), repr(blk.token), str(blk.token),
                  json.dumps(blk.field_values())):
        assert "hunter2" not in shown
    store = ResultStore("vault-store/v")
    store.write("k", 7)
    assert ResultStore("memory://vault-space").read("k") == 7


def test_secret_block_from_python(stashflow_home, vault):
    assert VaultStorage(token="s3cret").save("py") == "vault-store/py"
    loaded = VaultStorage.load("py")
    assert loaded == VaultStorage(token=SecretStr("s3cret"))
    assert loaded != VaultStorage(token="other")
    assert "s3cret" not in repr(loaded)
    assert list_blocks() == ["vault-store/py"]


@pytest.mark.parametrize("args, message", [
    (["--set", "fsync=maybe"], "true or false"),
    (["--set", "nosuchfield=1"], "has no field 'nosuchfield'"),
    (["--set", "basepath"], "is not NAME=VALUE"),
])
def test_bad_field_values_are_refused_and_nothing_is_written(stashflow_home, args, message):
    result = cli("block", "create", "local-file-system", "bad", *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (stashflow_home / "blocks" / "local-file-system" / "bad.json").exists()


def test_bad_int_field_is_refused(stashflow_home, vault):
    result = cli("block", "create", "vault-store", "v", "--set", "retries=lots")
    assert result.exit_code == 1 and "needs an integer" in result.output
    assert list_blocks() == []


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", "", "x" * 200, "sp ace"])
def test_bad_block_names_are_refused_and_nothing_escapes(stashflow_home, tmp_path, name):
    before = _all_files(tmp_path)
    result = cli("block", "create", "local-file-system", name, "--set", f"basepath={tmp_path}")
    assert result.exit_code != 0
    assert _all_files(tmp_path) == before
    with pytest.raises(StashflowError):
        LocalFileSystem(basepath=str(tmp_path)).save(name)
    assert _all_files(tmp_path) == before


def test_unknown_block_type_says_what_to_do(stashflow_home, monkeypatch):
    result = cli("block", "create", "nope-bucket", "x")
    assert result.exit_code == 1 and "`stashflow block types`" in result.output
    monkeypatch.setenv("STASHFLOW_DISABLE_PLUGINS", "local")
    plugins.reset()
    result = cli("block", "create", "local-file-system", "x")
    assert result.exit_code == 1 and "pip install stashflow-local" in result.output


def test_default_storage_block_setting(stashflow_home, tmp_path, monkeypatch):
    LocalFileSystem(basepath=str(tmp_path / "blk")).save("main")
    monkeypatch.setenv("STASHFLOW_DEFAULT_RESULT_STORAGE_BLOCK", "local-file-system/main")
    ResultStore().write("k", 1)
    assert (tmp_path / "blk" / "k").is_file()


def test_a_damaged_block_file_is_a_clear_error(stashflow_home):
    path = stashflow_home / "blocks" / "local-file-system" / "broken.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    result = cli("block", "inspect", "local-file-system/broken")
    assert result.exit_code == 1
    assert "not valid" in result.output and "stashflow block delete" in result.output


def test_block_types_lists_the_installed_types():
    out = CliRunner().invoke(main, ["block", "types"]).output
    assert "local-file-system  schemes: file://  fields: basepath, fsync  (plugin local)" in out
    assert "memory  schemes: memory://  fields: name  (plugin stashflow.storage.memory)" in out


def test_redact_masks_a_secret_plain_and_url_encoded_and_drops_a_revealing_cause():
    secret = "tok/en+with=chars"
    block = VaultStorage(name="v", token=secret)
    text = f"GET https://x/tokeninfo?access_token=tok%2Fen%2Bwith%3Dchars failed; key {secret}"
    redacted = block.redact(text)
    assert secret not in redacted and "tok%2Fen" not in redacted
    assert redacted.count("**********") == 2

    clean = ValueError("connection refused")
    assert block.safe_cause(clean) is clean
    try:
        try:
            raise ValueError(f"bad token {secret}")
        except ValueError as inner:
            raise RuntimeError("request failed") from inner
    except RuntimeError as outer:
        assert block.safe_cause(outer) is None


def _saved(slug: str) -> dict:
    path = block_path(*slug.split("/"))
    assert _mode(path) == 0o600
    return json.loads(path.read_text())["fields"]


def test_a_block_field_takes_a_block_a_dict_or_a_slug(stashflow_home):
    key = VaultKey(secret="k1", scope="read")
    assert KeyedStorage(key=key).key is key
    assert KeyedStorage(key={"secret": "k1", "scope": "read"}).key == key
    key.save("k")
    assert KeyedStorage(key="vault-key/k").key == key
    assert KeyedStorage().key is None
    for wrong, message in ((VaultStorage(), "got a 'vault-store' block"), (7, "got a value of type int"),
                           ("vault-store/k", "got the slug of a 'vault-store' block"),
                           ("k1", "got text that is not a slug")):
        with pytest.raises(TypeError, match=r"KeyedStorage\.key takes a block of type 'vault-key'") as info:
            KeyedStorage(key=wrong)
        assert message in str(info.value) and "k1" not in str(info.value)
    with pytest.raises(TypeError, match="VaultKey has no field 'secrets'"):
        KeyedStorage(key={"secrets": "x"})
    with pytest.raises(BlockNotFound, match=r"KeyedStorage\.key refers to the block 'vault-key/gone'"):
        KeyedStorage(key="vault-key/gone")


def test_a_saved_held_block_is_saved_by_slug_and_resolved_on_load(stashflow_home, vault):
    key = VaultKey(secret="k1")
    key.save("k")
    KeyedStorage(name="ref", key=key).save("ref")
    assert _saved("keyed-store/ref")["key"] == "vault-key/k"  # the secret is only in the key's file
    inspected = cli("block", "inspect", "keyed-store/ref").output
    assert "key = vault-key/k" in inspected and "k1" not in inspected
    VaultKey(secret="k2").save("k", overwrite=True)  # rotated once, seen by every holder
    assert KeyedStorage.load("ref").key == VaultKey(secret="k2")
    assert load_block("keyed-store/ref").key.secret.get_secret_value() == "k2"
    assert cli("block", "delete", "vault-key/k").exit_code == 0
    with pytest.raises(BlockNotFound, match="refers to the block 'vault-key/k'"):
        KeyedStorage.load("ref")


def test_a_held_block_not_saved_as_it_is_goes_inline_and_stays_masked(stashflow_home, vault):
    KeyedStorage(name="inline", key=VaultKey(secret="k1")).save("inline")
    assert _saved("keyed-store/inline")["key"] == {"secret": "k1", "scope": "all"}
    inspected = cli("block", "inspect", "keyed-store/inline").output
    assert "k1" not in inspected and "'secret': '**********'" in inspected
    assert KeyedStorage.load("inline").key == VaultKey(secret="k1")
    key = VaultKey(secret="k1")
    key.save("k")
    key.scope = "changed since"  # the file no longer holds this block: inline, as it is now
    KeyedStorage(key=key).save("edited")
    assert _saved("keyed-store/edited")["key"]["scope"] == "changed since"


def test_a_held_block_from_the_shell_by_slug(stashflow_home, vault):
    VaultKey(secret="k1").save("k")
    result = cli("block", "create", "keyed-store", "s", "--set", "key=vault-key/k")
    assert result.exit_code == 0, result.output
    assert _saved("keyed-store/s")["key"] == "vault-key/k"
    assert load_block("keyed-store/s").key == VaultKey(secret="k1")
    result = cli("block", "create", "keyed-store", "t", "--set", "key=vault-store/k")
    assert result.exit_code != 0 and "takes a block of type 'vault-key'" in result.output


def test_held_secrets_are_redacted_and_a_holder_pickles(stashflow_home):
    block = KeyedStorage(key=VaultKey(secret="tok/en"))
    assert block.redact("GET ?t=tok%2Fen then tok/en") == "GET ?t=********** then **********"
    assert "tok/en" not in repr(block)
    copy = pickle.loads(pickle.dumps(block))
    assert copy == block and copy.key.secret.get_secret_value() == "tok/en"


def test_one_setting_takes_the_value_given_and_refuses_two_that_differ():
    assert one_setting("B", ("region", None), ("creds.region", "eu")) == "eu"
    assert one_setting("B", ("key", SecretStr("s")), ("creds.key", "s")) == SecretStr("s")
    assert one_setting("B", ("a", None)) is None
    with pytest.raises(ValueError, match=r"B: key and creds\.key differ") as info:
        one_setting("B", ("key", SecretStr("s1")), ("creds.key", "s2"))
    assert "s1" not in str(info.value) and "s2" not in str(info.value)
