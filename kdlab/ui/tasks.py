"""Following background jobs from a UI: every long computation is a run in the store, done by a worker.

``submit(store, kind, **params)`` launches a job (``kdlab.submit``) and returns its ``RunHandle``, which holds
nothing but the store and the run id: its progress, whether it is done, its failure and its result (read by the
kind's one reader) all come from the store. ``latest(store, kind, of=run_id)`` finds the newest
job of a kind, so a page or widget opened later (a new browser session, a restarted kernel) shows the live
progress or the result of work started before. ``poll`` mirrors a task in a dashboard page's button, progress
bar and status pane.
"""
from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from kdlab.runs.background import RunHandle, failure_of
from kdlab.runs.background import submit as submit_job
from kdlab.runs.store import TERMINAL, Store


def submit(store: Store, kind: str, **params: Any) -> RunHandle:
    """Launch a job of ``kind`` in the background (a worker process; the GPU when there is one)."""
    return submit_job(kind, store, **params)


def latest(store: Store, kind: str, of: str | None = None) -> RunHandle | None:
    """The newest job of ``kind`` (analysing run ``of`` when given), or None."""
    jobs = store.jobs(kind, of=of)
    return RunHandle(store, jobs[0].id) if jobs else None


def show_queued(button: Any, bar: Any, status: Any) -> None:
    """Panel face of a task just submitted: its button off, an empty progress bar, status ``queued``."""
    button.disabled, bar.visible, bar.value = True, True, 0
    status.object = "queued"


def poll(task: RunHandle | None, button: Any, bar: Any, status: Any, done: Callable[[Any], None]) -> None:
    """Mirror ``task`` in a page's button, progress bar (0-100) and status pane (called each second); once it
    finished, re-enable the button and pass its result to ``done`` (or show its error, escaped)."""
    if task is None or not button.disabled:
        return
    rec = task.store.get_run(task.id)  # a pure read: the dashboard's tick notices dead workers (refresh)
    progress = task.store.progress(task.id)
    bar.value = int(100 * progress.fraction)
    if rec.status not in TERMINAL:
        what = "computing" if rec.status == "running" else "queued (waiting for a free worker slot)"
        status.object = f"{what}: {html.escape(progress.message)}" if progress.message else what
        return
    button.disabled, bar.visible = False, False
    error = failure_of(rec)
    if error is not None:
        status.object = f"failed: {html.escape(error)}"
        return
    done(task.result())
