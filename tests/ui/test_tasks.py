"""Following background jobs from a UI (``kdlab.ui.tasks``): a ``RunHandle`` is a view of a run of the store, done by a
real worker process. Its progress is the store's, errors come back (escaped where shown), ``latest`` finds the
newest job of a kind for a run, and ``poll`` drives a page's button, progress bar and status pane."""
from __future__ import annotations

import time

import panel as pn
import pytest
from waiting import wait_for

from kdlab.runs.background import RunHandle
from kdlab.runs.job import PROGRESS
from kdlab.runs.scheduler import refresh
from kdlab.ui.tasks import latest, poll, show_queued, submit


def go(gate, *steps: int) -> None:
    for i in steps:
        (gate / f"go{i}").touch()


def store_progress(store, run_id) -> tuple[float, float]:
    """The newest progress rows of the run, read straight from the metrics table."""
    rows = store.metrics(run_id, kind=PROGRESS)
    last = rows.groupby("key")["value"].last()
    return float(last["progress/done"]), float(last["progress/total"])


def faces():
    button = pn.widgets.Button(label="Compute")
    bar = pn.indicators.Progress(value=0, max=100, visible=False)
    status = pn.pane.Markdown("press Compute")
    return button, bar, status


@pytest.mark.timeout(120)
def test_task_progress_mirrors_the_store_and_result_is_read_by_the_kind(store, gated_kind, tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    t0 = time.perf_counter()
    task = submit(store, gated_kind, gate=str(gate), steps=4)
    assert time.perf_counter() - t0 < 5 and not task.done  # the call returns while the worker waits at step 1
    assert isinstance(task, RunHandle) and task.kind == gated_kind and task.run_dir == store.run_dir(task.id)
    assert store.get_run(task.id).spec["params"] == {"run": None, "gate": str(gate), "steps": 4, "fail": ""}
    assert task.result() is None and task.failure() is None
    for step in (1, 2, 3):
        go(gate, step)
        p = wait_for(lambda s=step: task.progress().done == s and task.progress(), what=f"step {step}")
        assert (p.done, p.total) == store_progress(store, task.id) == (step, 4)
        assert p.fraction == step / 4 and p.message == f"step {step}/4"
        assert task.status == "running" and not task.done
    go(gate, 4)
    assert RunHandle(store, task.id).wait(timeout=60) == "completed", task.record.error
    assert task.done and task.failure() is None and task.progress().fraction == 1.0
    assert task.progress().message.startswith("completed")  # the last log line: the worker's own
    assert task.result() == {"steps": 4, "squares": [1, 4, 9, 16]}
    assert RunHandle(store, task.id).result() == task.result()  # nothing is held by the task object


@pytest.mark.timeout(120)
def test_errors_surface_escaped_and_cancel_stops_the_worker(store, gated_kind, tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    go(gate, 1)
    task = submit(store, gated_kind, gate=str(gate), steps=1, fail="bad <layer> & co")
    button, bar, status = faces()
    show_queued(button, bar, status)
    drawn = []
    assert RunHandle(store, task.id).wait(timeout=60) == "failed"
    poll(task, button, bar, status, drawn.append)
    assert task.failure() == "failed: ValueError: bad <layer> & co"  # the raw error for Python callers
    assert status.object == "failed: failed: ValueError: bad &lt;layer&gt; &amp; co"  # escaped on the page
    assert not button.disabled and not bar.visible and drawn == [] and task.result() is None

    blocked = submit(store, gated_kind, gate=str(tmp_path / "never"), steps=2)
    wait_for(lambda: blocked.record.pid is not None and blocked.status == "running", what="a running worker")
    pid = blocked.record.pid
    assert blocked.cancel() == "cancelled"
    assert blocked.done and blocked.failure().startswith("cancelled: ")
    import psutil

    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             timeout=10, what="the worker to exit")


@pytest.mark.timeout(120)
def test_latest_finds_the_newest_job_of_a_kind_for_a_run(store, gated_kind, tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    go(gate, 1)
    assert latest(store, gated_kind) is None
    first = submit(store, gated_kind, run="run-a", gate=str(gate), steps=1)
    other = submit(store, gated_kind, run="run-b", gate=str(gate), steps=1)
    newest = submit(store, gated_kind, run="run-a", gate=str(gate), steps=1)
    for t in (first, other, newest):
        assert RunHandle(store, t.id).wait(timeout=60) == "completed", t.record.error
    assert latest(store, gated_kind, of="run-a").id == newest.id
    assert latest(store, gated_kind, of="run-b").id == other.id
    assert latest(store, gated_kind).id == newest.id
    assert latest(store, gated_kind, of="run-c") is None
    assert latest(store, "cka", of="run-a") is None  # another kind's jobs are not this kind's
    assert latest(store, gated_kind, of="run-a").result() == {"steps": 1, "squares": [1]}


@pytest.mark.timeout(120)
def test_poll_drives_button_bar_and_status(store, gated_kind, tmp_path, monkeypatch):
    gate = tmp_path / "gate"
    gate.mkdir()
    button, bar, status = faces()
    drawn = []
    poll(None, button, bar, status, drawn.append)  # no task: nothing changes
    assert status.object == "press Compute" and not button.disabled

    monkeypatch.setenv("KDLAB_MAX_CONCURRENT", "0")  # the queue is paused: the job waits for a slot
    task = submit(store, gated_kind, gate=str(gate), steps=2)
    show_queued(button, bar, status)
    assert button.disabled and bar.visible and bar.value == 0 and status.object == "queued"
    for _ in range(2):  # polling reads the store; it never starts the job
        poll(task, button, bar, status, drawn.append)
    assert task.status == "queued" and status.object.startswith("queued (waiting for a free worker slot)")

    monkeypatch.setenv("KDLAB_MAX_CONCURRENT", "2")
    refresh(store)  # the dashboard tick's scheduling call starts it
    go(gate, 1)
    wait_for(lambda: task.progress().done == 1, what="step 1")
    poll(task, button, bar, status, drawn.append)
    assert (bar.value, status.object) == (50, "computing: step 1/2")
    assert button.disabled and bar.visible and drawn == []

    go(gate, 2)
    assert RunHandle(store, task.id).wait(timeout=60) == "completed"
    poll(task, button, bar, status, drawn.append)
    assert drawn == [{"steps": 2, "squares": [1, 4]}]
    assert not button.disabled and not bar.visible and bar.value == 100
    poll(task, button, bar, status, drawn.append)  # once the button is back, polling does nothing more
    assert len(drawn) == 1


@pytest.mark.timeout(120)
def test_task_widget_follows_a_job_and_a_new_widget_picks_it_up(store, gated_kind, tmp_path):
    from kdlab.ui.task_widget import TaskWidget

    class Gated(TaskWidget):
        kind = gated_kind

        def figures(self, result):
            return []

        def done_message(self, result):
            return f"<{result['steps']} steps>"

    gate = tmp_path / "gate"
    gate.mkdir()
    w = Gated(store, run="run-a", gate=str(gate), steps=2)
    task = w.compute()
    assert w.button.disabled and w.compute().id == task.id  # a second click while it runs: the same job
    go(gate, 1)
    wait_for(lambda: task.progress().done == 1, what="step 1")
    assert w.update() is False and w.progress.value == 0.5 and w.label.value == "running: step 1/2"
    go(gate, 2)
    assert w.wait(timeout=60) == {"steps": 2, "squares": [1, 4]}
    assert w.label.value == "&lt;2 steps&gt;" and not w.button.disabled and w.progress.value == 1.0

    again = Gated(store, run="run-a")  # a restarted kernel: the newest job of the run is shown, not recomputed
    assert again.follow().id == task.id and again.update() and again.result == w.result
    assert [r.id for r in store.jobs(gated_kind)] == [task.id]

    bad = Gated(store, gate=str(gate), steps=1, fail="no <b>")
    with pytest.raises(RuntimeError, match="failed: ValueError: no <b>"):
        bad.wait(timeout=60)
    assert bad.label.value == "failed: failed: ValueError: no &lt;b&gt;"
