"""The storage blocks installed here, by class name, where Prefect users import them
(`from stashflow.filesystems import LocalFileSystem`).

Nothing is imported by name: an attribute is looked up among the storage types the
plugin registry already holds (what `stashflow plugins` lists), so a class is here
exactly when its plugin is installed and enabled. Prefect's `RemoteFileSystem(basepath=
"s3://...")` has no class here: give the URL itself (`result_storage="s3://bucket/path"`)
or the cloud plugin's block.
"""

from __future__ import annotations

from typing import Any

from .registry import get_registry


def _storage_classes() -> dict[str, type]:
    return {cls.__name__: cls for cls in get_registry().storage_types.values()}


def __getattr__(name: str) -> Any:
    cls = _storage_classes().get(name)
    if cls is None:
        installed = ", ".join(sorted(_storage_classes())) or "none"
        raise AttributeError(
            f"module 'stashflow.filesystems' has no attribute {name!r}: no installed storage "
            f"plugin registers a class of that name (installed: {installed}; "
            "`stashflow plugins` lists them)")
    return cls


def __dir__() -> list[str]:
    return sorted(_storage_classes())
