"""Blocks: configuration objects that can be saved under a name and loaded by slug.

Fields are annotated class attributes; a default makes a field optional.
Fields annotated `SecretStr` hold credentials: they are masked in reprs, in
`stashflow block inspect` and in errors, and stored only in files of mode 0600
under ``$STASHFLOW_HOME/blocks/<type_slug>/<name>.json``.
"""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any, ClassVar

from . import settings
from ._files import make_private_dir, write_private
from .exceptions import BlockNotFound, StashflowError
from .settings import parse_bool

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_MISSING = object()


class SecretStr:
    """A string that does not show itself: ``str()`` and ``repr()`` are masked."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str):
            raise TypeError("a secret must be a str")
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self):
        return (SecretStr, (self._value,))


def reveal(value: Any) -> Any:
    """The plain value of a field (a SecretStr's secret, else the value itself)."""
    return value.get_secret_value() if isinstance(value, SecretStr) else value


class Block:
    """Base of saveable configuration objects; storage backends are blocks."""

    type_slug: ClassVar[str]

    @classmethod
    def _fields(cls) -> dict[str, tuple[Any, bool]]:
        """Field name -> (default or _MISSING, is_secret), base classes first (cached per class)."""
        cached = cls.__dict__.get("_field_table")
        if cached is not None:
            return cached
        fields: dict[str, tuple[Any, bool]] = {}
        for klass in reversed(cls.__mro__):
            for name, annotation in vars(klass).get("__annotations__", {}).items():
                text = annotation if isinstance(annotation, str) else repr(annotation)
                if name.startswith("_") or "ClassVar" in text:
                    continue
                fields[name] = (vars(klass).get(name, _MISSING), "SecretStr" in text)
        cls._field_table = fields
        return fields

    def __init__(self, **values: Any):
        fields = self._fields()
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} has no field {unknown[0]!r}; fields: {', '.join(fields)}"
            )
        for name, (default, secret) in fields.items():
            if name in values:
                value = values[name]
            elif default is _MISSING:
                raise TypeError(f"{type(self).__name__} needs a value for {name!r}")
            else:
                value = default
            if secret and value is not None and not isinstance(value, SecretStr):
                value = SecretStr(value)
            setattr(self, name, value)

    def field_values(self, reveal_secrets: bool = False) -> dict[str, Any]:
        out = {}
        for name, (_, secret) in self._fields().items():
            value = getattr(self, name)
            if secret and value is not None:
                value = reveal(value) if reveal_secrets else "**********"
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out

    def redact(self, text: str) -> str:
        """`text` with every secret field's value (plain or URL-encoded) masked.

        For backends quoting a client library's error: some put credentials in URLs.
        """
        from urllib.parse import quote, quote_plus

        for name, (_, secret) in self._fields().items():
            value = reveal(getattr(self, name)) if secret else None
            if isinstance(value, str) and value:
                for form in {value, quote(value, safe=""), quote_plus(value)}:
                    text = text.replace(form, "**********")
        return text

    def safe_cause(self, exc: BaseException) -> BaseException | None:
        """`exc` to chain a new error from, or None when its chain would show a secret."""
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            text = f"{current}\n{current!r}"
            if self.redact(text) != text:
                return None
            current = current.__cause__ or current.__context__
        return exc

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.field_values().items())
        return f"{type(self).__name__}({shown})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.field_values(True) == other.field_values(True)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), json.dumps(self.field_values(True), sort_keys=True, default=str)))

    # saving and loading -------------------------------------------------------------

    def save(self, name: str, overwrite: bool = False) -> str:
        """Save under `name`; returns the slug. Refuses to replace unless `overwrite`."""
        path = block_path(self.type_slug, name)
        make_private_dir(path.parent)
        data = json.dumps(
            {"type": self.type_slug, "fields": self.field_values(reveal_secrets=True)},
            indent=2, sort_keys=True,
        ).encode("utf-8")

        slug = f"{self.type_slug}/{name}"
        if not write_private(path, data, replace=overwrite):
            raise StashflowError(f"a block is already saved as {slug!r}; pass overwrite=True "
                                 "(stashflow block create --overwrite) to replace it")
        return slug

    @classmethod
    def load(cls, name: str) -> Block:
        """Load the block of this type saved under `name`."""
        _type_slug, fields = read_block(f"{cls.type_slug}/{name}")
        return build_block(cls, fields)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise StashflowError(
            f"invalid block name {name!r}: use letters, digits, '-', '_' and '.', "
            "starting with a letter or digit"
        )
    return name


def blocks_dir() -> Path:

    return settings.home() / "blocks"


def block_path(type_slug: str, name: str) -> Path:
    return blocks_dir() / _check_name(type_slug) / f"{_check_name(name)}.json"


def split_slug(slug: str) -> tuple[str, str]:
    type_slug, sep, name = slug.partition("/")
    if not sep or not type_slug or not name or "/" in name:
        raise StashflowError(f"invalid block slug {slug!r}: expected 'type/name'")
    return _check_name(type_slug), _check_name(name)


def read_block(slug: str) -> tuple[str, dict[str, Any]]:
    """(type slug, saved field values) of the block saved as `slug` ("s3-bucket/my-block")."""
    type_slug, name = split_slug(slug)
    path = block_path(type_slug, name)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BlockNotFound(
            f"no block saved as {slug!r} (looked in {path.parent}); "
            "`stashflow block ls` lists the saved blocks"
        ) from None
    try:
        data = json.loads(raw)
        fields = data["fields"]
        if not isinstance(fields, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise StashflowError(
            f"the block file {path} is not valid; delete it (`stashflow block delete {slug}`) "
            "and create the block again"
        ) from None
    return type_slug, fields


def build_block(cls: type[Block], fields: dict[str, Any]) -> Block:
    """An instance of `cls` from saved field values (fields it no longer has are ignored)."""
    known = cls._fields()
    return cls(**{k: v for k, v in fields.items() if k in known})


def list_blocks() -> list[str]:
    root = blocks_dir()
    if not root.is_dir():
        return []
    return sorted(
        f"{type_dir.name}/{f.stem}"
        for type_dir in root.iterdir() if type_dir.is_dir()
        for f in type_dir.glob("*.json")
    )


def delete_block(slug: str) -> None:
    type_slug, name = split_slug(slug)
    try:
        block_path(type_slug, name).unlink()
    except FileNotFoundError:
        raise BlockNotFound(f"no block saved as {slug!r}") from None


def coerce(cls: type[Block], field: str, text: str) -> Any:
    """Turn a CLI string into a field value, following the field's annotation."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: take the text as it is
        hints = {}
    annotation = hints.get(field, str)
    for kind, parse, what in ((int, int, "an integer"), (float, float, "a number"),
                              (bool, parse_bool, "true or false")):
        if annotation in (kind, kind | None):
            try:
                return parse(text)
            except ValueError:
                raise StashflowError(
                    f"field {field!r} of {cls.type_slug} needs {what}, not {text!r}"
                ) from None
    return text


