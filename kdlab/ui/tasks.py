"""Following background jobs from a UI: every long computation is a run in the store, done by a worker.

``submit(store, kind, **params)`` launches a job (``kdlab.submit``) and returns a ``JobTask``, a view of that run
which holds nothing but the store and the run id: its progress, whether it is done, its error and its result
(read by the kind's one reader) all come from the store. ``latest(store, kind, of=run_id)`` finds the newest
job of a kind, so a page or widget opened later (a new browser session, a restarted kernel) shows the live
progress or the result of work started before. ``poll`` mirrors a task in a dashboard page's button, progress
bar and status pane.
"""
from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdlab.runs.background import cancel_run
from kdlab.runs.background import submit as submit_job
from kdlab.runs.job import Progress, get_job, kind_of
from kdlab.runs.store import TERMINAL, Store


class JobTask:
    """One job of the store seen from a UI: ``progress``, ``done``, ``error()``, ``result()``, ``cancel()``."""

    def __init__(self, store: Store, run_id: str):
        self.store, self.id = store, run_id

    def __repr__(self) -> str:
        return f"JobTask({self.id!r}, status={self.status!r})"

    @property
    def record(self) -> Any:
        return self.store.get_run(self.id)

    @property
    def kind(self) -> str:
        return kind_of(self.record.spec)

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def run_dir(self) -> Path:
        return self.store.run_dir(self.id)

    @property
    def progress(self) -> Progress:
        return self.store.progress(self.id)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def error(self) -> str | None:
        """Why the job did not complete (None while it runs or once it completed)."""
        rec = self.record
        if rec.status in TERMINAL and rec.status != "completed":
            return f"{rec.status}: {rec.error or 'no error recorded'}"
        return None

    def result(self) -> Any:
        """What the job saved, read back by its kind's reader (None before it wrote anything)."""
        return get_job(self.kind).read(self.run_dir)

    def cancel(self) -> str:
        return cancel_run(self.store, self.id)


def submit(store: Store, kind: str, **params: Any) -> JobTask:
    """Launch a job of ``kind`` in the background (a worker process; the GPU when there is one)."""
    return JobTask(store, submit_job(kind, store, **params).id)


def latest(store: Store, kind: str, of: str | None = None) -> JobTask | None:
    """The newest job of ``kind`` (analysing run ``of`` when given), or None."""
    jobs = store.jobs(kind, of=of)
    return JobTask(store, jobs[0].id) if jobs else None


def show_queued(button: Any, bar: Any, status: Any) -> None:
    """Panel face of a task just submitted: its button off, an empty progress bar, status ``queued``."""
    button.disabled, bar.visible, bar.value = True, True, 0
    status.object = "queued"


def poll(task: JobTask | None, button: Any, bar: Any, status: Any, done: Callable[[Any], None]) -> None:
    """Mirror ``task`` in a page's button, progress bar (0-100) and status pane (called each second); once it
    finished, re-enable the button and pass its result to ``done`` (or show its error, escaped)."""
    if task is None or not button.disabled:
        return
    rec = task.record
    progress = task.store.progress(task.id)
    bar.value = int(100 * progress.fraction)
    if rec.status not in TERMINAL:
        what = "computing" if rec.status == "running" else "queued (waiting for a free worker slot)"
        status.object = f"{what}: {html.escape(progress.message)}" if progress.message else what
        return
    button.disabled, bar.visible = False, False
    error = task.error()
    if error is not None:
        status.object = f"failed: {html.escape(error)}"
        return
    done(task.result())
