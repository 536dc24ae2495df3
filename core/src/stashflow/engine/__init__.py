"""The flow/task engine: `@flow`, `@task`, futures, task runners."""

from .context import FlowRun, TaskRun, TaskRunContext, get_flow_run, get_task_run_context
from .flows import Flow, flow
from .futures import FutureList, State, TaskRunFuture
from .options import FlowOptions, TaskOptions
from .persistence import FlowConfig, TaskConfig
from .runners import TaskRunner, ThreadPoolTaskRunner
from .tasks import CacheWarning, Task, task, unmapped

__all__ = [
    "CacheWarning", "Flow", "FlowConfig", "FlowOptions", "FlowRun", "FutureList", "State",
    "Task", "TaskConfig", "TaskOptions", "TaskRun",
    "TaskRunContext", "TaskRunFuture", "TaskRunner", "ThreadPoolTaskRunner", "flow",
    "get_flow_run", "get_task_run_context", "task", "unmapped",
]
