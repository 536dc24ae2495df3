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

TYPE_CHECKING = False  # not typing's: `import stashflow` imports nothing it does not need
if TYPE_CHECKING:  # the lazy names above, as type checkers must see them
    from .blocks import Block as Block
    from .blocks import SecretStr as SecretStr
    from .engine import Flow as Flow
    from .engine import State as State
    from .engine import Task as Task
    from .engine import flow as flow
    from .engine import task as task
    from .engine import unmapped as unmapped
    from .records import RecordMetadata as RecordMetadata
    from .records import ResultRecord as ResultRecord
    from .results import ResultStore as ResultStore
    from .serializers import Serializer as Serializer
    from .storage import StorageBackend as StorageBackend
    from .transactions import transaction as transaction


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
