"""Runs: specs, the job contract, the run store and background execution.

``launch(spec)`` (or ``submit(kind, **params)``) returns a ``RunHandle`` at once; the run's worker executes the
job's kind (``kdlab.runs.job``; the built-in kinds are in ``kdlab.jobs``) and writes status, progress, metrics
and logs into the store (``open_store()``), which UIs read.
"""
from __future__ import annotations

from kdlab.runs.background import RunHandle, cancel_run, launch, resume_run, submit
from kdlab.runs.executors import EXECUTORS, Executor, LocalExecutor, get_executor, register_executor
from kdlab.runs.job import JOBS, Job, JobContext, get_job, list_jobs, register_job
from kdlab.runs.store import STATUSES, RunRecord, Store, StoreCallback, StoreError, open_store

__all__ = [
    "EXECUTORS", "JOBS", "STATUSES", "Executor", "Job", "JobContext", "get_job", "list_jobs", "register_job",
    "submit", "LocalExecutor", "RunHandle", "RunRecord", "Store", "StoreCallback",
    "StoreError", "cancel_run", "get_executor", "launch", "open_store", "register_executor", "resume_run",
]
