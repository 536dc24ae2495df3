"""Settings: argument > environment > active profile > default, and `stashflow config`."""

import os
import stat
import tomllib

import pytest
from click.testing import CliRunner
from stashflow import ResultStore, settings
from stashflow.cli import main
from stashflow.exceptions import SettingsError


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _view(*flags: str) -> dict[str, str]:
    result = cli("config", "view", *flags)
    assert result.exit_code == 0, result.output
    return dict(line.split("=", 1) for line in result.output.splitlines())


def test_defaults(stashflow_home):
    shown = _view()
    assert list(shown) == list(settings.SETTINGS)
    assert shown["STASHFLOW_HOME"] == str(stashflow_home)
    assert shown["STASHFLOW_RESULTS_PERSIST_BY_DEFAULT"] == "false"
    assert shown["STASHFLOW_DEFAULT_RESULT_STORAGE_BLOCK"] == ""
    assert shown["STASHFLOW_RESULTS_DEFAULT_SERIALIZER"] == "pickle"
    assert shown["STASHFLOW_LOCAL_STORAGE_PATH"] == str(stashflow_home / "storage")
    assert shown["STASHFLOW_TASKS_REFRESH_CACHE"] == "false"
    assert shown["STASHFLOW_RESULTS_SIGNING_KEY"] == ""
    assert settings.get("STASHFLOW_RESULTS_SIGNING_KEY") is None


def test_set_then_view_then_unset(stashflow_home):
    result = cli("config", "set", "STASHFLOW_RESULTS_PERSIST_BY_DEFAULT=true",
                 "STASHFLOW_RESULTS_DEFAULT_SERIALIZER=json")
    assert result.exit_code == 0, result.output
    assert "Set STASHFLOW_RESULTS_PERSIST_BY_DEFAULT in profile 'default'." in result.output
    data = tomllib.loads((stashflow_home / "profiles.toml").read_text())
    assert data == {"active": "default", "profiles": {"default": {
        "STASHFLOW_RESULTS_PERSIST_BY_DEFAULT": "true",
        "STASHFLOW_RESULTS_DEFAULT_SERIALIZER": "json"}}}
    assert settings.get("STASHFLOW_RESULTS_PERSIST_BY_DEFAULT") is True
    sources = _view("--show-sources")
    assert sources["STASHFLOW_RESULTS_PERSIST_BY_DEFAULT"] == "true  (profile)"
    assert sources["STASHFLOW_RESULTS_DEFAULT_SERIALIZER"] == "json  (profile)"
    assert sources["STASHFLOW_TASKS_REFRESH_CACHE"] == "false  (default)"
    assert sources["STASHFLOW_HOME"] == f"{stashflow_home}  (env)"
    result = cli("config", "unset", "STASHFLOW_RESULTS_DEFAULT_SERIALIZER")
    assert result.exit_code == 0 and "Unset STASHFLOW_RESULTS_DEFAULT_SERIALIZER." in result.output
    assert _view("--show-sources")["STASHFLOW_RESULTS_DEFAULT_SERIALIZER"] == "pickle  (default)"
    assert _view()["STASHFLOW_RESULTS_PERSIST_BY_DEFAULT"] == "true"


def test_profiles_file_is_private(stashflow_home):
    assert cli("config", "set", "STASHFLOW_RESULTS_SIGNING_KEY=hunter2").exit_code == 0
    mode = stat.S_IMODE(os.stat(stashflow_home / "profiles.toml").st_mode)
    assert mode == 0o600
    assert [p.name for p in stashflow_home.iterdir()] == ["profiles.toml"]  # no temp file left


def test_precedence_argument_over_env_over_profile_over_default(stashflow_home, monkeypatch, tmp_path):
    def written_with(**kwargs):
        store = ResultStore(**kwargs)
        return store.write("k", [1]).serializer, store.storage.basepath

    default_path = str(stashflow_home / "storage")
    assert written_with() == ("pickle", default_path)
    settings.set_values({"STASHFLOW_RESULTS_DEFAULT_SERIALIZER": "json",
                         "STASHFLOW_LOCAL_STORAGE_PATH": str(tmp_path / "from-profile")})
    assert written_with() == ("json", str(tmp_path / "from-profile"))
    assert settings.get_with_source("STASHFLOW_RESULTS_DEFAULT_SERIALIZER") == ("json", "profile")
    monkeypatch.setenv("STASHFLOW_RESULTS_DEFAULT_SERIALIZER", "msgpack")
    monkeypatch.setenv("STASHFLOW_LOCAL_STORAGE_PATH", str(tmp_path / "from-env"))
    assert written_with() == ("msgpack", str(tmp_path / "from-env"))
    assert _view("--show-sources")["STASHFLOW_RESULTS_DEFAULT_SERIALIZER"] == "msgpack  (env)"
    assert written_with(serializer="pickle", storage=tmp_path / "from-arg") == (
        "pickle", str(tmp_path / "from-arg"))
    assert (tmp_path / "from-arg" / "k").is_file()
    assert (tmp_path / "from-env" / "k").is_file()
    assert (tmp_path / "from-profile" / "k").is_file()
    assert (stashflow_home / "storage" / "k").is_file()


def test_signing_key_is_masked_wherever_it_comes_from(stashflow_home, monkeypatch):
    assert cli("config", "set", "STASHFLOW_RESULTS_SIGNING_KEY=hunter2").exit_code == 0
    for flags in ((), ("--show-sources",)):
        result = cli("config", "view", *flags)
        assert "hunter2" not in result.output
        assert "STASHFLOW_RESULTS_SIGNING_KEY=********" in result.output
    assert settings.get("STASHFLOW_RESULTS_SIGNING_KEY") == "hunter2"
    monkeypatch.setenv("STASHFLOW_RESULTS_SIGNING_KEY", "from-env-secret")
    result = cli("config", "view", "--show-sources")
    assert "from-env-secret" not in result.output
    assert "STASHFLOW_RESULTS_SIGNING_KEY=********  (env)" in result.output


def test_unknown_setting_is_refused_with_a_suggestion_and_nothing_written(stashflow_home):
    result = cli("config", "set", "STASHFLOW_RESULTS_PERSIST_BY_DEFAULT=true",
                 "STASHFLOW_RESULT_PERSIST_BY_DEFAULT=true")
    assert result.exit_code == 1
    assert "unknown setting 'STASHFLOW_RESULT_PERSIST_BY_DEFAULT'" in result.output
    assert "Did you mean STASHFLOW_RESULTS_PERSIST_BY_DEFAULT?" in result.output
    assert "Traceback" not in result.output
    assert not (stashflow_home / "profiles.toml").exists()
    result = cli("config", "unset", "STASHFLOW_SIGNING_KEY")
    assert result.exit_code == 1 and "Did you mean STASHFLOW_RESULTS_SIGNING_KEY?" in result.output
    with pytest.raises(SettingsError, match="unknown setting"):
        settings.get("STASHFLOW_NOPE")


@pytest.mark.parametrize("pair", [
    "STASHFLOW_RESULTS_PERSIST_BY_DEFAULT=maybe",
    "STASHFLOW_TASKS_REFRESH_CACHE=2",
    "STASHFLOW_DEFAULT_RESULT_STORAGE_BLOCK=no-slash",
    "STASHFLOW_DEFAULT_RESULT_STORAGE_BLOCK=../../etc",
    "STASHFLOW_RESULTS_DEFAULT_SERIALIZER=",
    "STASHFLOW_LOCAL_STORAGE_PATH= ",
    "STASHFLOW_HOME=/elsewhere",
    "NOT_A_PAIR",
])
def test_bad_values_are_refused_and_the_profile_is_unchanged(stashflow_home, pair):
    assert cli("config", "set", "STASHFLOW_RESULTS_DEFAULT_SERIALIZER=json").exit_code == 0
    before = (stashflow_home / "profiles.toml").read_bytes()
    result = cli("config", "set", "STASHFLOW_TASKS_REFRESH_CACHE=true", pair)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert (stashflow_home / "profiles.toml").read_bytes() == before
    assert settings.get("STASHFLOW_TASKS_REFRESH_CACHE") is False


def test_bad_environment_value_is_reported_with_its_source(monkeypatch):
    monkeypatch.setenv("STASHFLOW_RESULTS_PERSIST_BY_DEFAULT", "perhaps")
    with pytest.raises(SettingsError, match=r"'perhaps'.*from env"):
        settings.get("STASHFLOW_RESULTS_PERSIST_BY_DEFAULT")
    result = cli("config", "view")
    assert result.exit_code == 1 and "perhaps" in result.output


@pytest.mark.parametrize("value", ["/tmp/caf\u00e9 \U0001f600", 'quote"back\\slash', "tab\tdel\x7fnul\x00",
                                   "line\nbreak"])
def test_values_with_any_characters_round_trip_through_the_profile(stashflow_home, value):
    settings.set_values({"STASHFLOW_RESULTS_DEFAULT_SERIALIZER": value})
    settings._profile_cache = None
    assert settings.get("STASHFLOW_RESULTS_DEFAULT_SERIALIZER") == value.strip()
    assert tomllib.loads((stashflow_home / "profiles.toml").read_text())


def test_a_value_that_cannot_be_stored_leaves_the_profile_alone(stashflow_home):
    settings.set_values({"STASHFLOW_RESULTS_DEFAULT_SERIALIZER": "json"})
    before = (stashflow_home / "profiles.toml").read_bytes()
    with pytest.raises(SettingsError):
        settings.set_values({"STASHFLOW_RESULTS_DEFAULT_SERIALIZER": "bad\udcff"})
    assert (stashflow_home / "profiles.toml").read_bytes() == before


def test_a_change_is_seen_immediately_even_when_size_and_mtime_match(stashflow_home):
    for value in ("aaaa", "bbbb", "cccc", "dddd"):
        settings.set_values({"STASHFLOW_RESULTS_DEFAULT_SERIALIZER": value})
        assert settings.get("STASHFLOW_RESULTS_DEFAULT_SERIALIZER") == value


def test_profile_edited_behind_our_back_is_reread(stashflow_home):
    settings.set_values({"STASHFLOW_RESULTS_DEFAULT_SERIALIZER": "json"})
    assert settings.get("STASHFLOW_RESULTS_DEFAULT_SERIALIZER") == "json"
    path = stashflow_home / "profiles.toml"
    path.write_text(path.read_text().replace('"json"', '"msgp"'))
    assert settings.get("STASHFLOW_RESULTS_DEFAULT_SERIALIZER") == "msgp"


def test_active_profile_from_the_environment(stashflow_home, monkeypatch):
    settings.set_values({"STASHFLOW_RESULTS_DEFAULT_SERIALIZER": "json"})
    monkeypatch.setenv("STASHFLOW_PROFILE", "ci")
    assert settings.get("STASHFLOW_RESULTS_DEFAULT_SERIALIZER") == "pickle"
    result = cli("config", "set", "STASHFLOW_RESULTS_DEFAULT_SERIALIZER=msgpack")
    assert "in profile 'ci'" in result.output
    assert settings.get("STASHFLOW_RESULTS_DEFAULT_SERIALIZER") == "msgpack"
    monkeypatch.delenv("STASHFLOW_PROFILE")
    assert settings.get("STASHFLOW_RESULTS_DEFAULT_SERIALIZER") == "json"


def test_hand_written_profile_with_other_value_types_still_accepts_set(stashflow_home):
    (stashflow_home / "profiles.toml").write_text(
        'active = "default"\n[profiles.default]\nSTASHFLOW_TASKS_REFRESH_CACHE = true\n')
    assert settings.get("STASHFLOW_TASKS_REFRESH_CACHE") is True
    settings.set_values({"STASHFLOW_RESULTS_DEFAULT_SERIALIZER": "json"})
    assert settings.get("STASHFLOW_TASKS_REFRESH_CACHE") is True
    assert settings.get("STASHFLOW_RESULTS_DEFAULT_SERIALIZER") == "json"


def test_unparseable_profile_is_a_clear_error(stashflow_home):
    (stashflow_home / "profiles.toml").write_text("this is = = not toml")
    result = cli("config", "view")
    assert result.exit_code == 1
    assert "cannot parse" in result.output and "profiles.toml" in result.output


@pytest.mark.parametrize("content", ['profiles = "x"', "[profiles]\ndefault = 3"])
def test_a_profile_file_of_the_wrong_shape_is_a_clear_error(stashflow_home, content):
    (stashflow_home / "profiles.toml").write_text(content)
    result = cli("config", "view")
    assert result.exit_code == 1
    assert "one table per profile" in result.output


def test_any_text_round_trips_through_the_profile_file(stashflow_home):
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    env_text = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)),
                       min_size=1, max_size=10)  # what an environment variable can hold

    @hsettings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(value=st.text(min_size=1).filter(str.strip), profile=env_text)
    def check(value, profile):
        os.environ["STASHFLOW_PROFILE"] = profile
        try:
            settings.set_values({"STASHFLOW_RESULTS_DEFAULT_SERIALIZER": value})
            settings._profile_cache = None
            assert settings.get("STASHFLOW_RESULTS_DEFAULT_SERIALIZER") == value.strip()
        finally:
            del os.environ["STASHFLOW_PROFILE"]

    check()
    assert tomllib.loads((stashflow_home / "profiles.toml").read_text())["active"] == "default"


def test_prefects_other_spellings_are_read_when_the_setting_is_not_set(monkeypatch, tmp_path):
    from stashflow import settings as s

    monkeypatch.setenv("STASHFLOW_RESULTS_LOCAL_STORAGE_PATH", str(tmp_path / "alias"))
    assert s.get("STASHFLOW_LOCAL_STORAGE_PATH") == tmp_path / "alias"
    monkeypatch.setenv("STASHFLOW_LOCAL_STORAGE_PATH", str(tmp_path / "own"))
    assert s.get("STASHFLOW_LOCAL_STORAGE_PATH") == tmp_path / "own"  # the setting's own name wins
    monkeypatch.setenv("STASHFLOW_TASK_DEFAULT_RETRIES", "nope")
    with pytest.raises(s.SettingsError, match="bad value 'nope' for STASHFLOW_TASKS_DEFAULT_RETRIES"):
        s.get("STASHFLOW_TASKS_DEFAULT_RETRIES")
    monkeypatch.delenv("STASHFLOW_TASK_DEFAULT_RETRIES")
    s.set_values({"STASHFLOW_FLOW_DEFAULT_RETRIES": "2"})
    assert s.get("STASHFLOW_FLOWS_DEFAULT_RETRIES") == 2
    assert "STASHFLOW_FLOWS_DEFAULT_RETRIES" in s.profiles_path().read_text()
    s.unset_values(["STASHFLOW_FLOW_DEFAULT_RETRIES"])
    assert s.get("STASHFLOW_FLOWS_DEFAULT_RETRIES") == 0


def test_an_alias_in_the_environment_reaches_a_task_run(monkeypatch, tmp_path):
    from stashflow import task

    @task(persist_result=True, result_storage_key="k")
    def one():
        return 1

    monkeypatch.setenv("STASHFLOW_RESULTS_LOCAL_STORAGE_PATH", str(tmp_path / "alias"))
    one()
    assert (tmp_path / "alias" / "k").is_file()
