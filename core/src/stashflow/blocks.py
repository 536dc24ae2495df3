"""Blocks: configuration objects that can be saved under a name and loaded by slug.

Fields are annotated class attributes; a default makes a field optional.
Fields annotated `SecretStr` hold credentials: they are masked in reprs, in
`stashflow block inspect` and in errors, and stored only in files of mode 0600
under ``$STASHFLOW_HOME/blocks/<type_slug>/<name>.json``.

A field annotated with a Block class (``credentials: AwsCredentials | None``) holds
a block of that class: given as an instance, a dict of its fields, or the slug of a
saved one. A block saved under a name (and unchanged since) is saved by its slug, a
reference resolved when the outer block is loaded; any other is saved inline, in the
outer block's own file. Either way a save writes that one file, atomically.
"""

from __future__ import annotations

import json
import re
import sys
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
    _saved_as: str | None = None  # the slug this block was last saved as or loaded from

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

    @classmethod
    def _block_fields(cls) -> dict[str, type[Block]]:
        """Field name -> Block class, for the fields whose annotation names one (cached per class)."""
        cached = cls.__dict__.get("_block_field_table")
        if cached is not None:
            return cached
        fields = cls._fields()
        table: dict[str, type[Block]] = {}
        for klass in reversed(cls.__mro__):
            module = sys.modules.get(klass.__module__)
            namespace = {**(vars(module) if module else {}), **vars(klass)}
            for name, annotation in vars(klass).get("__annotations__", {}).items():
                if name not in fields:
                    continue
                if isinstance(annotation, str):  # `from __future__ import annotations`
                    try:  # as typing.get_type_hints does, one annotation at a time
                        annotation = eval(annotation, namespace)
                    except Exception:
                        continue
                kinds = [t for t in typing.get_args(annotation) or (annotation,)
                         if isinstance(t, type) and issubclass(t, Block)]
                if kinds:
                    table[name] = kinds[0]
                else:
                    table.pop(name, None)
        cls._block_field_table = table
        return table

    def __init__(self, **values: Any):
        fields = self._fields()
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} has no field {unknown[0]!r}; fields: {', '.join(fields)}"
            )
        nested = self._block_fields()
        for name, (default, secret) in fields.items():
            if name in values:
                value = values[name]
            elif default is _MISSING:
                raise TypeError(f"{type(self).__name__} needs a value for {name!r}")
            else:
                value = default
            if secret and value is not None and not isinstance(value, SecretStr):
                value = SecretStr(value)
            if name in nested and value is not None:
                value = _nested_block(type(self), name, nested[name], value)
            setattr(self, name, value)

    def field_values(self, reveal_secrets: bool = False) -> dict[str, Any]:
        out = {}
        for name, (_, secret) in self._fields().items():
            value = getattr(self, name)
            if secret and value is not None:
                value = reveal(value) if reveal_secrets else "**********"
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, Block):  # a saved block by its slug, else its own fields
                value = value._saved_as or value.field_values(reveal_secrets)
            out[name] = value
        return out

    def _secrets(self) -> list[str]:
        """The plain values of the secret fields, those of the blocks it holds included."""
        found = []
        for name, (_, secret) in self._fields().items():
            value = getattr(self, name)
            if secret and value is not None:
                found.append(reveal(value))
            elif isinstance(value, Block):
                found += value._secrets()
        return found

    def _document(self) -> dict[str, Any]:
        """The fields as saved: secrets revealed; a held block by reference or inline."""
        out = self.field_values(reveal_secrets=True)
        for name, kind in self._block_fields().items():
            value = getattr(self, name)
            if isinstance(value, Block):
                # By slug only if loading that slug gives this block back (same type, same values).
                same_type = value.type_slug == kind.type_slug
                out[name] = (same_type and value._reference()) or value._document()
        return out

    def _reference(self) -> str | None:
        """The slug this block is saved as, if that file still holds exactly these values."""
        if self._saved_as is None:
            return None
        try:
            _type_slug, saved = read_block(self._saved_as)
        except StashflowError:  # deleted or damaged since: the values go inline
            return None
        return self._saved_as if saved == json.loads(json.dumps(self._document())) else None

    def redact(self, text: str) -> str:
        """`text` with every secret field's value (plain or URL-encoded) masked.

        For backends quoting a client library's error: some put credentials in URLs.
        """
        from urllib.parse import quote, quote_plus

        for value in self._secrets():
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
        """Save under `name`; returns the slug. Refuses to replace unless `overwrite`.

        One file, written atomically; a block it holds goes in by slug when that block
        is saved as it is now, else inline.
        """
        path = block_path(self.type_slug, name)
        make_private_dir(path.parent)
        data = json.dumps(
            {"type": self.type_slug, "fields": self._document()},
            indent=2, sort_keys=True,
        ).encode("utf-8")

        slug = f"{self.type_slug}/{name}"
        if not write_private(path, data, replace=overwrite):
            raise StashflowError(f"a block is already saved as {slug!r}; pass overwrite=True "
                                 "(stashflow block create --overwrite) to replace it")
        self._saved_as = slug
        return slug

    @classmethod
    def load(cls, name: str) -> Block:
        """Load the block of this type saved under `name`."""
        slug = f"{cls.type_slug}/{name}"
        _type_slug, fields = read_block(slug)
        block = build_block(cls, fields)
        block._saved_as = slug
        return block


def _nested_block(owner: type[Block], field: str, kind: type[Block], value: Any) -> Block:
    """The value of a Block-typed field: a `kind` instance, from one, a dict or a slug."""
    if isinstance(value, kind):
        return value
    wanted = (f"{owner.__name__}.{field} takes a block of type {kind.type_slug!r}: give "
              f"{kind.__name__}(...), a dict of its fields, or the slug of a saved one "
              f"('{kind.type_slug}/NAME')")
    if isinstance(value, dict):
        return kind(**value)
    if isinstance(value, str) and value.count("/") == 1:
        type_slug, name = split_slug(value)
        if type_slug != kind.type_slug:
            raise TypeError(f"{wanted}; got the slug of a {type_slug!r} block, {value!r}")
        try:
            return kind.load(name)
        except BlockNotFound:
            raise BlockNotFound(
                f"{owner.__name__}.{field} refers to the block {value!r}, which is not saved; "
                f"save it (`stashflow block create {kind.type_slug} {name} ...`) or give the "
                "block itself"
            ) from None
    if isinstance(value, Block):
        raise TypeError(f"{wanted}; got a {value.type_slug!r} block ({type(value).__name__})")
    shown = "text that is not a slug" if isinstance(value, str) else f"a value of type {type(value).__name__}"
    raise TypeError(f"{wanted}; got {shown}")  # not the value itself: it may be a secret


def one_setting(owner: str, *sources: tuple[str, Any]) -> Any:
    """The value the `(label, value)` sources agree on; None when none gives one.

    For a setting a block takes either from its own field or from a block it holds
    (its credentials): given twice with different values, it is a ValueError that
    names both places (never the values, which may be secrets).
    """
    given = [(label, value) for label, value in sources if value is not None]
    for label, value in given[1:]:
        if reveal(value) != reveal(given[0][1]):
            raise ValueError(f"{owner}: {given[0][0]} and {label} differ; give the setting in "
                             "one place only (the credentials block, or the field)")
    return given[0][1] if given else None


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


