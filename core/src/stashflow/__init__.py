"""stashflow: persist and cache the results of tasks and flows.

The public API is re-exported here and imported on first use, so that
`import stashflow` stays cheap.
"""

from .hookspecs import hookimpl

__version__ = "0.1.0"

_LAZY = {
    "ResultStore": "stashflow.results",
    "ResultRecord": "stashflow.records",
    "RecordMetadata": "stashflow.records",
    "StorageBackend": "stashflow.storage",
    "Serializer": "stashflow.serializers",
    "Block": "stashflow.blocks",
    "SecretStr": "stashflow.blocks",
    "flow": "stashflow.engine",
    "task": "stashflow.engine",
    "State": "stashflow.engine",
    "unmapped": "stashflow.engine",
    "transaction": "stashflow.transactions",
}

__all__ = ["hookimpl", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'stashflow' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
