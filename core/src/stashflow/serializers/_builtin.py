"""The built-in serializers: pickle (the default), json and msgpack."""

from __future__ import annotations

import pickle
from typing import IO, Any

from ..exceptions import SerializationError
from ..hookspecs import hookimpl
from . import Serializer


class PickleSerializer(Serializer):
    """Any picklable value; protocol 5, streamed to and from files."""

    type = "pickle"
    streaming = True

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL):
        self.protocol = protocol

    def dumps(self, obj: Any) -> bytes:
        try:
            return pickle.dumps(obj, protocol=self.protocol)
        except Exception as exc:
            raise SerializationError(f"cannot pickle {type(obj).__name__}: {exc}") from exc

    def loads(self, data: bytes | memoryview) -> Any:
        return pickle.loads(data)

    def dump(self, obj: Any, file: IO[bytes]) -> None:
        try:
            pickle.dump(obj, file, protocol=self.protocol)
        except OSError:
            raise  # the file failed (disk full...), not the value
        except Exception as exc:
            raise SerializationError(f"cannot pickle {type(obj).__name__}: {exc}") from exc

    def load(self, file: IO[bytes]) -> Any:
        return pickle.load(file)


class JSONSerializer(Serializer):
    """JSON values: dict (str keys), list, str, int, float, bool, None."""

    type = "json"

    def dumps(self, obj: Any) -> bytes:
        import json

        try:
            return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                f"the json serializer cannot encode {type(obj).__name__}: {exc}; "
                "use result_serializer='pickle' for arbitrary Python objects"
            ) from exc

    def loads(self, data: bytes | memoryview) -> Any:
        import json

        return json.loads(bytes(data))


class MsgpackSerializer(Serializer):
    """msgpack values: like JSON plus bytes and non-str keys (tuples come back as lists)."""

    type = "msgpack"

    def dumps(self, obj: Any) -> bytes:
        import msgpack

        try:
            return msgpack.packb(obj, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(
                f"the msgpack serializer cannot encode {type(obj).__name__}: {exc}"
            ) from exc

    def loads(self, data: bytes | memoryview) -> Any:
        import msgpack

        return msgpack.unpackb(data, raw=False, strict_map_key=False)


@hookimpl
def register_serializers(register):
    register(PickleSerializer)
    register(JSONSerializer)
    register(MsgpackSerializer)
