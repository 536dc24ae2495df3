"""Hook specifications. Every hook hands the plugin a `register` callback.

The prose, with examples, is in docs/reference/hooks.md; a test keeps the two in step.
"""

import pluggy

hookspec = pluggy.HookspecMarker("stashflow")
hookimpl = pluggy.HookimplMarker("stashflow")


@hookspec
def register_storage_types(register):
    """Register storage backends: ``register(cls)``, cls a StorageBackend subclass."""


@hookspec
def register_block_types(register):
    """Register blocks that are not storage (credentials, say): ``register(cls)``, cls a
    Block subclass with a ``type_slug``. They save, load and show like storage blocks."""


@hookspec
def register_serializers(register):
    """Register serializers: ``register(cls)``, cls a Serializer subclass."""


@hookspec
def register_cache_policies(register):
    """Register named cache policies: ``register(name, policy)``."""


@hookspec
def register_lock_managers(register):
    """Register lock managers: ``register(name, factory)``, factory(storage) -> LockManager."""


@hookspec
def register_task_runners(register):
    """Register task runners: ``register(name, cls)``, cls a TaskRunner subclass."""
