"""The flow/task engine: `@flow`, `@task`, futures, task runners."""

from .context import (
    FlowRun,
    FlowRunContext,
    TaskRun,
    TaskRunContext,
    get_flow_run,
    get_run_context,
    get_task_run_context,
)
from .flows import Flow, flow
from .futures import FutureList, State, TaskRunFuture
from .options import FlowOptions, TaskOptions
from .persistence import FlowConfig, TaskConfig
from .retries import exponential_backoff
from .runners import TaskRunner, ThreadPoolTaskRunner
from .task_runs import CacheWarning
from .tasks import Task, task, unmapped

__all__ = [
    "CacheWarning",
    "Flow",
    "FlowConfig",
    "FlowOptions",
    "FlowRun",
    "FlowRunContext",
    "FutureList",
    "State",
    "Task",
    "TaskConfig",
    "TaskOptions",
    "TaskRun",
    "TaskRunContext",
    "TaskRunFuture",
    "TaskRunner",
    "ThreadPoolTaskRunner",
    "exponential_backoff",
    "flow",
    "get_flow_run",
    "get_run_context",
    "get_task_run_context",
    "task",
    "unmapped",
]
