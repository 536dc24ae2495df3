"""Task runners, where Prefect users look for them (`from stashflow.task_runners import
ThreadPoolTaskRunner`). The Dask runner is the stashflow-dask plugin's
(`from stashflow_dask import DaskTaskRunner`); there is no process-pool runner."""

from .engine import TaskRunner, ThreadPoolTaskRunner

__all__ = ["TaskRunner", "ThreadPoolTaskRunner"]
