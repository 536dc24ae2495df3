"""Serializers turn a value into bytes and back.

A subclass sets `type` (its registry name) and implements `dumps` and `loads`.
Streaming `dump(obj, file)` / `load(file)` default to the byte versions; a
serializer that can do better (pickle) overrides them and sets `streaming`.
A record names its serializer by `type` only: reading never imports a module
named by stored data. `revive(value, annotation)` turns the dicts the json
serializer writes dataclasses and pydantic models as back into them.
"""

from __future__ import annotations

from typing import IO, Any, ClassVar


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


# Last: _builtin subclasses Serializer. `revive` is for the engine: it turns what a
# serializer read back into the dataclass or pydantic model a return annotation names.
from ._builtin import JSONSerializer, MsgpackSerializer, PickleSerializer, revive  # noqa: E402

__all__ = ["JSONSerializer", "MsgpackSerializer", "PickleSerializer", "Serializer", "revive"]


def __getattr__(name: str) -> Any:
    """A serializer class an installed plugin defines, by its class name, where Prefect
    users import it (`from stashflow.serializers import CompressedSerializer`)."""
    from .. import plugins, settings  # lazy: only for a name this module does not define

    found = None if name.startswith("_") else plugins.find_attribute(
        name, settings.get("STASHFLOW_DISABLE_PLUGINS"))
    if isinstance(found, type) and issubclass(found, Serializer):
        return found
    hint = (" (pip install stashflow-compressed-json)" if name == "CompressedSerializer" else "")
    raise AttributeError(f"module 'stashflow.serializers' has no attribute {name!r}: no "
                         f"enabled plugin defines a serializer class of that name{hint}")
