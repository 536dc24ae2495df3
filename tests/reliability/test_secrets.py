"""A canary secret never shows: not in CLI output, logs, warnings, exception messages or reprs.

The canary is the results signing key (environment and profile) and the value
of every secret field of every installed storage block type. Everything the
user can see is collected and searched for it, in plain, percent-encoded and
base64 spellings.
"""

from __future__ import annotations

import base64
import logging
import traceback
import uuid
import warnings
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from stashflow import flow, task
from stashflow.cache_policies import INPUTS
from stashflow.cli import main
from stashflow.exceptions import ResultSignatureError
from stashflow.registry import get_registry
from stashflow.results import ResultStore

CANARY = f"CANARY-7f3a-{uuid.uuid4().hex}"
REQUIRED = {"bucket_name": "canary-bucket", "bucket": "canary-bucket",
            "container_name": "canary-container"}


def spellings(secret: str) -> list[str]:
    raw = secret.encode()
    return [secret, quote(secret, safe=""), base64.b64encode(raw).decode().rstrip("="),
            secret.encode().hex()]


def assert_clean(text: str, where: str) -> None:
    for spelling in spellings(CANARY):
        assert spelling not in text, f"the canary secret leaked in {where}:\n{text[:2000]}"


def everything(exc: BaseException) -> str:
    """An exception as every reader sees it: message, repr, full chained traceback."""
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc))])


def secret_block_args(cls) -> dict[str, str]:
    args = {}
    for name, (_default, secret) in cls._fields().items():
        if secret:
            args[name] = CANARY
        elif name in REQUIRED:
            args[name] = REQUIRED[name]
        elif name == "endpoint_url":
            args[name] = "http://127.0.0.1:9"  # nothing listens: operations fail fast
    return args


@pytest.fixture
def canary_env(monkeypatch, stashflow_home):
    monkeypatch.setenv("STASHFLOW_RESULTS_SIGNING_KEY", CANARY)
    # Cloud clients fail fast, with no credential chain or metadata lookups.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    return stashflow_home


def secret_types() -> list[str]:
    return sorted(slug for slug, cls in get_registry().storage_types.items()
                  if any(secret for _, secret in cls._fields().values()))


def test_the_cli_never_prints_the_signing_key_or_a_secret_field(canary_env, tmp_path):
    runner = CliRunner()
    outputs = []

    def run(*args: str) -> str:
        result = runner.invoke(main, list(args))
        text = result.output + (result.stderr if result.stderr_bytes is not None else "")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            text += everything(result.exception)
        outputs.append((" ".join(args), text))
        return text

    types = secret_types()
    assert "s3-bucket" in types  # at least one installed type has secret fields
    for slug in types:
        cls = get_registry().storage_types[slug]
        sets = [part for k, v in secret_block_args(cls).items() for part in ("--set", f"{k}={v}")]
        assert "Saved" in run("block", "create", slug, "canary", *sets)
        run("block", "create", slug, "canary", *sets)  # refused: exists
        run("block", "create", slug, "broken", *sets, "--set", "no_such_field=1")
        run("block", "inspect", f"{slug}/canary")
    run("block", "ls")
    run("block", "types")
    run("plugins")
    run("plugins", "--json")
    run("config", "view")
    run("config", "view", "--show-sources")
    run("config", "set", f"STASHFLOW_RESULTS_SIGNING_KEY={CANARY}")
    run("config", "view", "--show-sources")

    store = ResultStore(tmp_path / "results")
    store.write("signed/one", {"plain": "value"}, expiration=3600)
    where = str(tmp_path / "results")
    assert "signed/one" in run("results", "ls", "--storage", where)
    run("results", "ls", "--storage", where, "--json")
    assert "signed: yes" in run("results", "show", "signed/one", "--storage", where, "--value")
    run("results", "gc", "--storage", where, "--dry-run", "-v")
    # A record signed with another key is refused; the message names no key.
    ResultStore(tmp_path / "results", signing_key="another-key").write("forged", 1)
    assert "signature" in run("results", "show", "forged", "--storage", where, "--value")
    # Storage that cannot be reached, configured with the canary as its credentials.
    run("results", "ls", "--storage", "s3-bucket/canary")

    for command, text in outputs:
        assert_clean(text, f"`stashflow {command}`")


def test_logs_and_warnings_of_a_signed_flow_run_never_show_the_key(canary_env, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    root = tmp_path / "results"

    @task(result_storage=root, cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"))
    def double(x: int) -> int:
        return 2 * x

    @flow(result_storage=root, persist_result=True)
    def pipeline(n: int) -> list[int]:
        return [double(i) for i in range(n)]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pipeline(3) == [0, 2, 4]
        # Tamper with every record: the next run refuses them (with a warning) and reruns.
        for path in root.rglob("*"):
            if path.is_file() and not path.name.startswith(".stashflow"):
                data = bytearray(path.read_bytes())
                data[-1] ^= 1
                path.write_bytes(bytes(data))
        assert pipeline(3) == [0, 2, 4]
    assert any("unusable" in str(w.message) for w in caught)  # the tampering was noticed
    for w in caught:
        assert_clean(str(w.message), "a warning")
    text = "\n".join(f"{r.name} {r.levelname} {r.getMessage()} {r.args!r}" for r in caplog.records)
    assert_clean(text, "the logs")
    assert_clean(caplog.text, "the formatted logs")


def test_errors_and_reprs_never_show_the_key_or_secret_fields(canary_env, tmp_path):
    texts = []
    store = ResultStore(tmp_path / "results")
    texts += [repr(store), str(store)]
    store.write("k", [1, 2, 3])
    for reader in (ResultStore(tmp_path / "results", signing_key="wrong"),
                   ResultStore(tmp_path / "results", signing_key=CANARY + "x")):
        with pytest.raises(ResultSignatureError) as info:
            reader.read("k")
        texts.append(everything(info.value))
    ResultStore(tmp_path / "results", signing_key="other").write("theirs", 1)
    with pytest.raises(ResultSignatureError) as info:
        store.read("theirs")
    texts.append(everything(info.value))

    for slug in secret_types():
        cls = get_registry().storage_types[slug]
        block = cls(**secret_block_args(cls))
        texts += [repr(block), str(block), repr(block.field_values()), f"{block!r}",
                  repr(ResultStore(block)), repr(vars(block))]
        # an unknown field, and each required field left empty (a credentials block has none)
        for bad in ({"no_such_field": 1}, *({k: ""} for k in REQUIRED.keys() & cls._fields().keys())):
            try:
                cls(**{**secret_block_args(cls), **bad})
            except Exception as exc:
                texts.append(everything(exc))
    for text in texts:
        assert_clean(text, "an exception or a repr")


# gcsfs puts a raw token into its tokeninfo URL: the backends redact secret values
# from quoted client errors and do not chain a cause that shows one.
@pytest.mark.parametrize("slug", ["s3-bucket", "azure-blob-storage", "gcs-bucket"])
def test_a_failing_storage_operation_never_shows_the_credentials(canary_env, slug):
    cls = get_registry().storage_types.get(slug)
    if cls is None:
        pytest.skip(f"{slug} is not installed")
    store = ResultStore(cls(**secret_block_args(cls)))
    for action in (lambda: store.write("k", 1), lambda: store.read("k"), lambda: list(store.list())):
        try:
            action()
        except Exception as exc:
            assert_clean(everything(exc), f"an error of {slug}")
        else:
            pytest.fail(f"{slug} with nothing listening should have failed")
