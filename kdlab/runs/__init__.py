"""Runs: the experiment spec, running it, the run store and background execution.

``launch(spec)`` returns a ``RunHandle`` at once; the run's worker writes status, metrics and logs into the
store (``open_store()``), which UIs read.
"""
from __future__ import annotations

from kdlab.runs.background import RunHandle, cancel_run, launch, resume_run
from kdlab.runs.executors import EXECUTORS, Executor, LocalExecutor, get_executor, register_executor
from kdlab.runs.store import STATUSES, RunRecord, Store, StoreCallback, StoreError, open_store

__all__ = [
    "EXECUTORS", "STATUSES", "Executor", "LocalExecutor", "RunHandle", "RunRecord", "Store", "StoreCallback",
    "StoreError", "cancel_run", "get_executor", "launch", "open_store", "register_executor", "resume_run",
]
