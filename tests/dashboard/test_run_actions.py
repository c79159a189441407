"""Cancel and resume are offered only where they apply, on every face (live curves, run detail, notebook
monitor); until a run has metrics, the curves' place says what to do or wait for instead of drawing axes."""
from __future__ import annotations

import pytest
from dashboard_helpers import TINY_SPEC

from kdlab.runs.store import STATUSES

OFFERED = {"queued": (True, False), "running": (True, False), "completed": (False, False),
           "failed": (False, True), "cancelled": (False, True), "interrupted": (False, True)}


@pytest.fixture
def store(tmp_path):
    from kdlab.runs.store import open_store

    return open_store(tmp_path / "home")


def _run(store, status: str, rows: int = 0) -> str:
    rid = store.create_run({**TINY_SPEC, "name": f"r-{status}"}, status=status)
    if rows:
        store.add_metrics(rid, [(s, float(s), "epoch", "val/acc", s / 10, None) for s in range(1, rows + 1)])
    return rid


def _handle(store, run_id):
    from kdlab.runs.background import RunHandle

    return RunHandle(store, run_id)


def _offered(cancel, resume) -> tuple[bool, bool]:
    return (not cancel.disabled and cancel.visible, not resume.disabled and resume.visible)


@pytest.mark.parametrize("status", STATUSES)
def test_live_curves_and_run_detail_offer_only_what_applies(store, status):
    from kdlab.ui.detail import RunDetail
    from kdlab.ui.live import LiveCurves, can_cancel, can_resume

    assert (can_cancel(status), can_resume(status)) == OFFERED[status]
    rid = _run(store, status, rows=2)
    live = LiveCurves(store, run_id=rid)
    assert _offered(live.cancel_button, live.resume_button) == OFFERED[status]
    # a button that does not apply is hidden, not just greyed out
    assert live.cancel_button.visible == OFFERED[status][0] and live.resume_button.visible == OFFERED[status][1]
    detail = RunDetail(store)
    detail.open(rid)
    assert _offered(detail.cancel_button, detail.resume_button) == OFFERED[status]


def test_buttons_follow_the_status(store):
    from kdlab.ui.detail import RunDetail
    from kdlab.ui.live import LiveCurves

    rid = _run(store, "running", rows=1)
    live, detail = LiveCurves(store, run_id=rid), RunDetail(store)
    detail.open(rid)
    store.set_status(rid, "failed", error="boom")
    live.tick()
    detail.tick()
    assert _offered(live.cancel_button, live.resume_button) == (False, True)
    assert _offered(detail.cancel_button, detail.resume_button) == (False, True)
    assert "failed" in detail.header.object


def test_notebook_monitor_offers_only_what_applies(store):
    from kdlab.ui.live import RunMonitor

    done = RunMonitor(_handle(store, _run(store, "completed", rows=2)), start=False)
    assert done.cancel_button.disabled and done.resume_button.disabled
    assert done.cancel_button.layout.display == done.resume_button.layout.display == "none"
    running = RunMonitor(_handle(store, _run(store, "running", rows=2)), start=False)
    assert not running.cancel_button.disabled and running.cancel_button.layout.display is None
    assert running.resume_button.layout.display == "none"
    failed = RunMonitor(_handle(store, _run(store, "failed", rows=2)), start=False)
    assert not failed.resume_button.disabled and failed.resume_button.layout.display is None
    assert failed.cancel_button.layout.display == "none"


def test_empty_states_say_what_to_do(store):
    from kdlab.ui.compare import ComparePage
    from kdlab.ui.detail import RunDetail
    from kdlab.ui.live import LiveCurves, RunMonitor
    from kdlab.ui.runs import RunsTable

    live, table, detail, compare = LiveCurves(store), RunsTable(store), RunDetail(store), ComparePage(store)
    assert not live.plot.visible and "Launch a run" in live.empty.object
    assert table.empty.visible and "launch one" in table.empty.object
    assert not detail.plot.visible and "launch one" in detail.empty.object
    assert not compare.plot.visible and "launch one" in compare.empty.object and compare.export_button.disabled
    queued = _run(store, "queued")
    live.run_id = queued
    assert not live.plot.visible and "Queued" in live.empty.object
    mon = RunMonitor(_handle(store, queued), start=False)
    assert mon.figure_box.layout.display == "none" and "Queued" in mon.empty.value
    compare.refresh_options()
    compare.compare([])
    assert "Pick runs" in compare.empty.object
    compare.compare([queued])
    assert not compare.plot.visible and "val/acc" in compare.empty.object
    store.add_metrics(queued, [(1, 1.0, "epoch", "val/acc", 0.5, None)])
    live.tick()
    assert live.plot.visible and not live.empty.visible
    assert live.plot.height == live.plot.object.layout.height  # the pane is as tall as the figure's rows
    compare = ComparePage(store)
    compare.compare([queued])
    assert compare.plot.visible and not compare.empty.visible and not compare.export_button.disabled
