"""Serializers turn a value into bytes and back.

A subclass sets `type` (its registry name) and implements `dumps` and `loads`.
Streaming `dump(obj, file)` / `load(file)` default to the byte versions; a
serializer that can do better (pickle) overrides them and sets `streaming`.
A record names its serializer by `type` only: reading never imports a module
named by stored data.
"""

from __future__ import annotations

from typing import IO, Any, ClassVar

from ..exceptions import SerializerNotFound


class Serializer:
    type: ClassVar[str]
    streaming: ClassVar[bool] = False

    def dumps(self, obj: Any) -> bytes:
        raise NotImplementedError

    def loads(self, data: bytes | memoryview) -> Any:
        raise NotImplementedError

    def dump(self, obj: Any, file: IO[bytes]) -> None:
        file.write(self.dumps(obj))

    def load(self, file: IO[bytes]) -> Any:
        return self.loads(file.read())

    def _config(self) -> dict[str, Any]:
        return dict(vars(self))

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._config() == other._config()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.type))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({args})"


def resolve_serializer(spec: str | Serializer | None, registry=None) -> Serializer:
    """A Serializer instance from a registered name, an instance, or None (the default)."""
    if isinstance(spec, Serializer):
        return spec
    from ..plugins import get_registry, install_hint

    if spec is None:
        from .. import settings

        spec = settings.get("STASHFLOW_RESULTS_DEFAULT_SERIALIZER")
    if not isinstance(spec, str):
        raise TypeError(
            f"result_serializer must be a registered name or a Serializer instance, not {spec!r}"
        )
    registry = registry if registry is not None else get_registry()
    try:
        cls = registry.serializers[spec]
    except KeyError:
        raise SerializerNotFound(spec, list(registry.serializers),
                                 install_hint("serializer", spec)) from None
    return cls()


__all__ = ["Serializer", "resolve_serializer"]
