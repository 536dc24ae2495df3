"""Tasks, where Prefect users look for them (`from stashflow.tasks import task,
exponential_backoff, task_input_hash`): the engine's task names plus the cache-key
function Prefect keeps in this module."""

from .cache_policies import task_input_hash
from .engine import Task, exponential_backoff, task, unmapped

__all__ = ["Task", "exponential_backoff", "task", "task_input_hash", "unmapped"]
