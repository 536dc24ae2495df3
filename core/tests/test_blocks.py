"""Blocks: saved storage configurations, through the CLI and from Python."""

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from stashflow import ResultStore, SecretStr, hookimpl, plugins
from stashflow.blocks import list_blocks
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


class VaultPlugin:
    @hookimpl
    def register_storage_types(self, register):
        register(VaultStorage)


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
    assert cli("block", "ls").output == ""
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
