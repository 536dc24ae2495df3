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
    "Flow": "stashflow.engine",
    "Task": "stashflow.engine",
    "State": "stashflow.engine",
    "unmapped": "stashflow.engine",
    "transaction": "stashflow.transactions",
}

__all__ = ["hookimpl", *_LAZY]


def __getattr__(name: str):
    import importlib

    module = _LAZY.get(name)
    if module is None:
        # A submodule, as after `import prefect` (`stashflow.tasks.task_input_hash`).
        if name.startswith("_") or not name.isidentifier():
            raise AttributeError(f"module 'stashflow' has no attribute {name!r}")
        try:
            return importlib.import_module(f"stashflow.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"stashflow.{name}":
                raise
            raise AttributeError(f"module 'stashflow' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
