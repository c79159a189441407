"""Background analysis tasks: results, progress, errors and cancellation, without blocking the caller."""
from __future__ import annotations

import threading
import time

import pytest

from kdlab.ui.tasks import Cancelled, submit


def test_submit_returns_at_once_and_reports_progress():
    gate = threading.Event()

    def work(progress, n):
        for i in range(n):
            progress(i + 1, n, f"step {i + 1}")
            if i == 1:
                gate.wait(10)
        return n * 10

    t0 = time.perf_counter()
    task = submit(work, 4)
    assert time.perf_counter() - t0 < 0.5 and not task.done  # waiting on the gate: still running
    deadline = time.monotonic() + 5
    while task.progress.done < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (task.progress.done, task.progress.total, task.progress.fraction) == (2, 4, 0.5)
    gate.set()
    assert task.result(10) == 40 and task.progress.message == "step 4" and task.error() is None


def test_errors_surface_and_cancel_stops_at_next_progress():
    def boom(progress):
        raise ValueError("bad layer")

    task = submit(boom)
    with pytest.raises(ValueError, match="bad layer"):
        task.result(10)
    assert isinstance(task.error(), ValueError)

    started = threading.Event()

    def loop(progress):
        started.set()
        for i in range(10_000):
            progress(i, 10_000)
            time.sleep(0.001)
        return "finished"

    task = submit(loop)
    started.wait(5)
    task.cancel()
    with pytest.raises(Cancelled):
        task.result(10)
