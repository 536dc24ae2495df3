"""The run contexts, where Prefect users look for them (`from stashflow.context import
TaskRunContext, get_run_context`). A task's `cache_key_fn(context, parameters)` receives
the TaskRunContext of the run it keys."""

from .engine import FlowRunContext, TaskRunContext, get_run_context

__all__ = ["FlowRunContext", "TaskRunContext", "get_run_context"]
