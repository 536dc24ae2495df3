"""Settings: explicit argument > environment variable > active profile > default.

Profiles live in ``$STASHFLOW_HOME/profiles.toml``::

    active = "default"

    [profiles.default]
    STASHFLOW_RESULTS_PERSIST_BY_DEFAULT = "true"

Values are kept as strings in the file and parsed on read, so a bad value is
refused by the same parser whether it came from the environment or a profile.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._files import make_private_dir, write_private
from .exceptions import SettingsError

PROFILE_ENV = "STASHFLOW_PROFILE"


def parse_bool(value: str) -> bool:
    """true/false, 1/0, yes/no, on/off (any case); an empty value is false."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _parse_path(value: str) -> Path:
    if not value.strip():
        raise ValueError("expected a path")
    return Path(value).expanduser()


def _parse_optional_str(value: str) -> str | None:
    return value or None


def _parse_slug(value: str) -> str | None:
    if not value:
        return None
    if not re.fullmatch(r"[a-z0-9][a-z0-9\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*", value):
        raise ValueError("expected a block slug like 's3-bucket/my-block'")
    return value


def _parse_name(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a serializer name such as 'pickle'")
    return value.strip()


_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def _parse_level(value: str) -> int:
    name = value.strip().upper()
    if name in _LEVELS:
        return _LEVELS[name]
    if name.isdigit():
        return int(name)
    raise ValueError(f"expected a logging level: {', '.join(_LEVELS)} (or a number)")


def _parse_names(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def _parse_optional_names(value: str) -> frozenset[str] | None:
    return _parse_names(value) or None  # unset: no restriction


_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
               "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4,
               "tb": 1000**4, "tib": 1024**4}


def parse_size(value: str) -> int:
    """A byte count from `1073741824`, `512MiB`, `1GiB`, `2 GB`."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", value)
    unit = match and _SIZE_UNITS.get(match.group(2).lower())
    if not match or unit is None:
        raise ValueError("expected a size such as 1073741824, 512MiB or 1GiB")
    size = int(float(match.group(1)) * unit)
    if size <= 0:
        raise ValueError("expected a size above zero")
    return size


def _parse_count(value: str) -> int:
    try:
        count = int(value.strip())
    except ValueError:
        raise ValueError("expected a whole number such as 0 or 3") from None
    if count < 0:
        raise ValueError("expected a whole number of at least 0")
    return count


def _parse_delays(value: str) -> float | list[float]:
    try:
        delays = [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise ValueError("expected seconds, or several separated by commas (1,2,4)") from None
    if not delays or any(d < 0 or d != d for d in delays):
        raise ValueError("expected seconds >= 0, or several separated by commas (1,2,4)")
    return delays[0] if len(delays) == 1 else delays


def _parse_ratio(value: str) -> float:
    try:
        ratio = float(value)
    except ValueError:
        raise ValueError("expected a number such as 1000") from None
    if not ratio >= 1 or ratio == float("inf"):
        raise ValueError("expected a finite number of at least 1")
    return ratio


@dataclass(frozen=True)
class Setting:
    name: str
    default: Callable[[], str]
    parse: Callable[[str], Any]
    help: str
    secret: bool = False
    in_profile: bool = True  # STASHFLOW_HOME cannot come from a file inside itself
    aliases: tuple[str, ...] = ()  # other names read when this one is not set (Prefect's)

    def value(self) -> Any:
        """The setting's current, parsed value (as Prefect's `PREFECT_X.value()`)."""
        return get(self.name)


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("STASHFLOW_HOME", lambda: "~/.stashflow", _parse_path,
                "Where profiles, blocks and (by default) local results live.", in_profile=False),
        Setting("STASHFLOW_RESULTS_PERSIST_BY_DEFAULT", lambda: "false", parse_bool,
                "Persist task and flow results unless told otherwise."),
        Setting("STASHFLOW_DEFAULT_RESULT_STORAGE_BLOCK", lambda: "", _parse_slug,
                "Slug of the saved block used when no result_storage is given.",
                aliases=("STASHFLOW_RESULTS_DEFAULT_STORAGE_BLOCK",)),
        Setting("STASHFLOW_RESULTS_DEFAULT_SERIALIZER", lambda: "pickle", _parse_name,
                "Serializer used when no result_serializer is given."),
        Setting("STASHFLOW_LOCAL_STORAGE_PATH",
                lambda: str(get("STASHFLOW_HOME") / "storage"), _parse_path,
                "Directory of the default local result storage.",
                aliases=("STASHFLOW_RESULTS_LOCAL_STORAGE_PATH",)),
        Setting("STASHFLOW_LOGGING_LEVEL", lambda: "INFO", _parse_level,
                "Level of the run log stashflow prints when logging is not configured."),
        Setting("STASHFLOW_TASKS_REFRESH_CACHE", lambda: "false", parse_bool,
                "Run every cached task again and overwrite its record."),
        Setting("STASHFLOW_TASKS_DISABLE_CACHING", lambda: "false", parse_bool,
                "Never look up a cached record: every task runs (its result still persists)."),
        Setting("STASHFLOW_TASKS_DEFAULT_NO_CACHE", lambda: "false", parse_bool,
                "Tasks that name no cache policy use NO_CACHE instead of DEFAULT."),
        Setting("STASHFLOW_TASKS_DEFAULT_RETRIES", lambda: "0", _parse_count,
                "Retries of a task that sets no retries.",
                aliases=("STASHFLOW_TASK_DEFAULT_RETRIES",)),
        Setting("STASHFLOW_TASKS_DEFAULT_RETRY_DELAY_SECONDS", lambda: "0", _parse_delays,
                "Seconds between a task's retries when it sets none (or 1,2,4 per retry).",
                aliases=("STASHFLOW_TASK_DEFAULT_RETRY_DELAY_SECONDS",)),
        Setting("STASHFLOW_FLOWS_DEFAULT_RETRIES", lambda: "0", _parse_count,
                "Retries of a flow that sets no retries.",
                aliases=("STASHFLOW_FLOW_DEFAULT_RETRIES",)),
        Setting("STASHFLOW_FLOWS_DEFAULT_RETRY_DELAY_SECONDS", lambda: "0", _parse_delays,
                "Seconds between a flow's retries when it sets none.",
                aliases=("STASHFLOW_FLOW_DEFAULT_RETRY_DELAY_SECONDS",)),
        Setting("STASHFLOW_RESULTS_SIGNING_KEY", lambda: "", _parse_optional_str,
                "HMAC key: records are signed, and unsigned or tampered ones refused.",
                secret=True),
        Setting("STASHFLOW_RESULTS_TRUSTED_SERIALIZERS", lambda: "", _parse_optional_names,
                "Comma-separated serializer names records may be decoded with (unset: all "
                "installed); records naming any other are refused before decoding."),
        Setting("STASHFLOW_RESULTS_MAX_DECOMPRESSED_SIZE", lambda: "1GiB", parse_size,
                "Largest value a compressed record may expand to (bytes, or 512MiB, 1GiB...)."),
        Setting("STASHFLOW_RESULTS_MAX_COMPRESSION_RATIO", lambda: "1000", _parse_ratio,
                "Largest expansion of a compressed record over its stored size (past 16 MiB)."),
        Setting("STASHFLOW_DISABLE_PLUGINS", lambda: "", _parse_names,
                "Comma-separated entry-point or distribution names not to load."),
    )
}
# Prefect's other spellings of the same settings: read when the setting itself is not set.
ALIASES: dict[str, str] = {alias: s.name for s in SETTINGS.values() for alias in s.aliases}


def _unknown(name: str) -> SettingsError:
    import difflib

    close = difflib.get_close_matches(name, SETTINGS, n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    return SettingsError(
        f"unknown setting {name!r}.{hint} Known settings: {', '.join(SETTINGS)}"
    )


def _setting(name: str) -> Setting:
    try:
        return SETTINGS[ALIASES.get(name, name)]
    except KeyError:
        raise _unknown(name) from None


def home() -> Path:
    return get("STASHFLOW_HOME")


def profiles_path() -> Path:
    return home() / "profiles.toml"


_profile_cache: tuple[tuple, dict] | None = None


def _read_profiles() -> dict:
    """Parsed profiles.toml, cached on (path, mtime, size): one stat per call."""
    global _profile_cache
    path = profiles_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    stamp = (str(path), st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
    if _profile_cache is not None and _profile_cache[0] == stamp:
        return _profile_cache[1]
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot parse {path}: {exc}. Fix or delete the file.") from exc
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
        raise SettingsError(
            f"cannot use {path}: 'profiles' must hold one table per profile, like "
            "[profiles.default]. Fix or delete the file."
        )
    _profile_cache = (stamp, data)
    return data


def forget_cache() -> None:
    """Read profiles.toml again on next use (tests that change STASHFLOW_HOME)."""
    global _profile_cache
    _profile_cache = None


def active_profile_name(data: dict | None = None) -> str:
    if os.environ.get(PROFILE_ENV):
        return os.environ[PROFILE_ENV]
    data = _read_profiles() if data is None else data
    return str(data.get("active", "default"))


def _profile_values() -> dict[str, str]:
    data = _read_profiles()
    return dict(data.get("profiles", {}).get(active_profile_name(data), {}))


def get_with_source(name: str) -> tuple[Any, str]:
    """The parsed value of a setting and where it came from: env, profile or default."""
    setting = _setting(name)
    names = (setting.name, *setting.aliases)
    raw = next((os.environ[n] for n in names if n in os.environ), None)
    source = "env"
    if raw is None and setting.in_profile:
        profile = _profile_values()
        raw = next((profile[n] for n in names if n in profile), None)
        source = "profile"
    if raw is None:
        raw, source = setting.default(), "default"
    try:
        return setting.parse(str(raw)), source
    except ValueError as exc:
        shown = "<secret>" if setting.secret else repr(raw)
        raise SettingsError(f"bad value {shown} for {name} (from {source}): {exc}") from None


def get(name: str) -> Any:
    """The parsed value of a setting (environment > profile > default)."""
    return get_with_source(name)[0]


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
                 "\f": "\\f", "\r": "\\r"}


def _toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest raw."""
    out = []
    for ch in value:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_\-]+", name) else _toml_string(name)


def _write_profiles(data: dict) -> None:
    global _profile_cache
    lines = [f"active = {_toml_string(str(data.get('active', 'default')))}", ""]
    for profile, values in data.get("profiles", {}).items():
        lines.append(f"[profiles.{_toml_string(profile)}]")
        lines.extend(f"{_toml_key(k)} = {_toml_string(str(v))}" for k, v in sorted(values.items()))
        lines.append("")
    text = "\n".join(lines)
    import tomllib

    try:  # never leave a file behind that the next read could not parse
        encoded = text.encode("utf-8")
        expected = {"active": str(data.get("active", "default")), "profiles": {
            str(name): {k: str(v) for k, v in values.items()}
            for name, values in data.get("profiles", {}).items()}}
        if tomllib.loads(text) != expected:
            raise ValueError("the profile would not read back as written")
    except (UnicodeEncodeError, ValueError) as exc:
        raise SettingsError(f"cannot store these settings in a profile: {exc}") from None
    path = profiles_path()

    make_private_dir(path.parent)

    _profile_cache = None
    write_private(path, encoded)


def set_values(values: dict[str, str]) -> None:
    """Validate every value, then write them all to the active profile (or none), each
    under its setting's own name (an alias given is stored as the setting it names)."""
    values = {_setting(name).name: raw for name, raw in values.items()}
    for name, raw in values.items():
        setting = _setting(name)
        if not setting.in_profile:
            raise SettingsError(f"{name} cannot be set in a profile: set the environment variable")
        try:
            setting.parse(raw)
        except ValueError as exc:
            shown = "<secret>" if setting.secret else repr(raw)
            raise SettingsError(f"bad value {shown} for {name}: {exc}") from None
    _update_active_profile(lambda profile: profile.update(values))


def unset_values(names: list[str]) -> None:
    settings = [_setting(name) for name in names]

    def remove(profile: dict) -> None:
        for setting in settings:
            for name in (setting.name, *setting.aliases):
                profile.pop(name, None)

    _update_active_profile(remove)


def _update_active_profile(change: Callable[[dict], None]) -> None:
    """Apply `change` to the active profile's values and write the file.

    The file's own `active` entry is kept: a profile chosen by STASHFLOW_PROFILE
    is changed, not made the default for later runs.
    """
    data = _read_profiles()
    target = active_profile_name(data)
    data = {"active": data.get("active", "default"), "profiles": dict(data.get("profiles", {}))}
    profile = dict(data["profiles"].get(target, {}))
    change(profile)
    data["profiles"][target] = profile
    _write_profiles(data)


# -- profiles ---------------------------------------------------------------------------


def profile_names() -> list[str]:
    """The saved profiles (the active one included, even before anything is set in it)."""
    data = _read_profiles()
    return sorted({*data.get("profiles", {}), active_profile_name(data)})


def _check_profile_name(name: str) -> None:
    if not name or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise SettingsError(f"invalid profile name {name!r}: use letters, digits, '.', '_', '-'")


def create_profile(name: str, copy_from: str | None = None) -> None:
    """A new profile, empty or with the settings of `copy_from`."""
    _check_profile_name(name)
    data = _read_profiles()
    profiles = dict(data.get("profiles", {}))
    if name in profiles:
        raise SettingsError(f"profile {name!r} already exists")
    if copy_from is not None and copy_from not in profile_names():
        raise SettingsError(f"no profile {copy_from!r} to copy (profiles: "
                            f"{', '.join(profile_names())})")
    profiles[name] = dict(profiles.get(copy_from, {})) if copy_from else {}
    _write_profiles({"active": data.get("active", "default"), "profiles": profiles})


def use_profile(name: str) -> None:
    """Make `name` the active profile of later runs (STASHFLOW_PROFILE still wins)."""
    data = _read_profiles()
    if name not in profile_names():
        raise SettingsError(f"no profile {name!r} (profiles: {', '.join(profile_names())}); "
                            f"create it with `stashflow profile create {name}`")
    _write_profiles({"active": name, "profiles": dict(data.get("profiles", {}))})


def delete_profile(name: str) -> None:
    """Delete a profile that is not the active one."""
    data = _read_profiles()
    profiles = dict(data.get("profiles", {}))
    if name not in profiles:
        raise SettingsError(f"no profile {name!r} (profiles: {', '.join(profile_names())})")
    if name == active_profile_name(data):
        raise SettingsError(f"profile {name!r} is active: `stashflow profile use OTHER` first")
    del profiles[name]
    _write_profiles({"active": data.get("active", "default"), "profiles": profiles})


def display_value(name: str, value: Any) -> str:
    """How a value is shown by `config view`: secrets masked, sets joined."""
    if SETTINGS[name].secret:
        return "********" if value else ""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, frozenset):
        return ",".join(sorted(value))
    if isinstance(value, list):
        return ",".join(f"{v:g}" for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# Each setting is also a module attribute, for code written against Prefect's
# `PREFECT_HOME.value()`: `from stashflow.settings import STASHFLOW_HOME`.
globals().update(SETTINGS)
