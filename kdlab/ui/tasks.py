"""Analysis in the background: ``submit(fn, ...)`` runs ``fn(progress, ...)`` in a thread pool.

Dashboard pages and notebook widgets use it so that the server and the kernel never block on a long
computation (CKA, source ranking, Fourier heat maps, ...). ``fn`` reports its progress by calling
``progress(done, total, message)``; the UI polls ``task.progress`` and ``task.done`` (``poll`` does it for
a dashboard page's button, progress bar and status pane).
"""
from __future__ import annotations

import html
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kdlab-analysis")


@dataclass
class Progress:
    """Where a task stands: ``done`` of ``total`` steps and the last message."""

    done: int = 0
    total: int = 0
    message: str = ""

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


@dataclass
class Task:
    """A submitted computation: its future, its live progress, and a cancel flag ``fn`` may check."""

    future: Future
    progress: Progress = field(default_factory=Progress)
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def done(self) -> bool:
        return self.future.done()

    def result(self, timeout: float | None = None) -> Any:
        """The value of ``fn`` (re-raises its error)."""
        return self.future.result(timeout)

    def error(self) -> BaseException | None:
        return self.future.exception(0) if self.future.done() else None

    def cancel(self) -> None:
        """Ask the task to stop (``fn`` sees ``progress.cancelled``) and drop it if it has not started."""
        self.cancelled.set()
        self.future.cancel()


class Cancelled(RuntimeError):
    """Raised inside a task's progress callback once the user cancelled it."""


def submit(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Task:
    """Run ``fn(progress, *args, **kwargs)`` in the analysis thread pool; returns at once."""
    task_ref: dict[str, Task] = {}
    progress = Progress()

    def report(done: int, total: int, message: str = "") -> None:
        progress.done, progress.total, progress.message = int(done), int(total), str(message)
        task = task_ref.get("task")
        if task is not None and task.cancelled.is_set():
            raise Cancelled("cancelled by the user")

    task = Task(_POOL.submit(fn, report, *args, **kwargs), progress)
    task_ref["task"] = task
    return task


def show_queued(button: Any, bar: Any, status: Any) -> None:
    """Panel face of a task just submitted: its button off, an empty progress bar, status ``queued``."""
    button.disabled, bar.visible, bar.value = True, True, 0
    status.object = "queued"


def poll(task: Task | None, button: Any, bar: Any, status: Any, done: Callable[[Any], None]) -> None:
    """Mirror ``task`` in a page's button, progress bar (0-100) and status pane (called each second); once it
    finished, re-enable the button and pass its result to ``done`` (or show its error, escaped)."""
    if task is None or not button.disabled:
        return
    bar.value = int(100 * task.progress.fraction)
    if not task.done:
        status.object = f"computing: {html.escape(task.progress.message)}"
        return
    button.disabled, bar.visible = False, False
    if task.error() is not None:
        status.object = f"failed: {html.escape(str(task.error()))}"
        return
    done(task.result())
