"""Incremental polling, the runs table, compare/export, pages and the dashboard, as Python calls."""
from __future__ import annotations

import time

import pytest
from ui_helpers import tiny

from kdlab.runs.background import RunHandle
from kdlab.ui import pages


def _fake_run(store, name="r", rows=0, status="running"):
    rid = store.create_run(tiny(name), status=status)
    if rows:
        store.add_metrics(rid, [(s, float(s), "epoch", "val/acc", s / 100, None) for s in range(1, rows + 1)])
    return rid


def test_poller_fetches_only_new_rows(store, monkeypatch):
    from kdlab.ui.live import CurvePoller

    rid = _fake_run(store, rows=3)
    calls = []
    real = store.metrics
    monkeypatch.setattr(store, "metrics", lambda *a, **k: calls.append(k.get("since_step")) or real(*a, **k))
    p = CurvePoller(store, rid)
    assert p.poll() == 3 and p.last_step == 3
    assert p.poll() == 0
    store.add_metrics(rid, [(4, 2.0, "epoch", "val/acc", 0.5, None)])
    assert p.poll() == 1 and p.points == 4
    assert calls == [None, 3, 3]
    store.update_run(rid, attempt=1)  # a resume: the poller reloads from scratch
    assert p.poll() == 4


def test_poller_reads_step_rows_only_until_the_first_epoch(store, monkeypatch):
    """The curves draw epoch rows once there are any: from then on step rows are dropped and not read."""
    from kdlab.ui.live import CurvePoller
    from kdlab.viz.data import as_history

    rid = _fake_run(store)
    store.add_metrics(rid, [(s, s / 10, "step", "train/loss", 1 / s, None) for s in range(1, 6)])
    kinds = []
    real = store.metrics
    monkeypatch.setattr(store, "metrics", lambda *a, **k: kinds.append(k.get("kind")) or real(*a, **k))
    p = CurvePoller(store, rid)
    assert p.poll() == 5 and len(as_history(p.frame)) == 5  # no epoch yet: the step rows are drawn
    store.add_metrics(rid, [(s, s / 10, "step", "train/loss", 1 / s, None) for s in range(6, 11)]
                      + [(10, 1.0, "epoch", "val/acc", 0.5, None)])
    assert p.poll() == 1 and p.points == 1 and set(p.frame["kind"]) == {"epoch"}
    store.add_metrics(rid, [(s, s / 10, "step", "train/loss", 1 / s, None) for s in range(11, 21)]
                      + [(20, 2.0, "epoch", "val/acc", 0.6, None)])
    assert p.poll() == 1 and p.points == 2 and p.last_step == 20
    assert kinds == [None, None, "epoch"]
    # everything the figure draws came through: the same history as from all rows
    assert as_history(p.frame).equals(as_history(real(rid)))
    # a new poller of a run that has epoch rows never reads its step rows
    kinds.clear()
    assert CurvePoller(store, rid).poll() == 2 and kinds == ["epoch"]


def test_live_curves_tick_and_buttons(store):
    from kdlab.ui.live import LiveCurves

    rid = _fake_run(store, rows=2)
    live = LiveCurves(store, run_id=rid)
    assert live.points == 2 and live.status == "running" and not live.cancel_button.disabled
    store.add_metrics(rid, [(3, 3.0, "epoch", "val/acc", 0.7, None)])
    t0 = time.perf_counter()
    assert live.tick() == 1
    assert time.perf_counter() - t0 < 1.0
    assert live.points == 3 and len(live.plot.object.data[0].x) == 3
    store.set_status(rid, "failed", error="boom")
    live.tick()
    assert live.cancel_button.disabled and not live.resume_button.disabled


def test_runs_table_filters_and_tags(store):
    from kdlab.ui.runs import RunsTable

    a = _fake_run(store, "alpha", status="completed")
    b = _fake_run(store, "beta", status="failed")
    opened = []
    t = RunsTable(store, on_open=opened.append)
    assert set(t.table.value["id"]) == {a, b}
    t.status_filter = ["failed"]
    assert list(t.table.value["id"]) == [b]
    t.status_filter = []
    t.tag("keep", [a])
    t.tag_filter = "keep"
    assert list(t.table.value["id"]) == [a]
    t.tag_filter, t.text_filter = "", "bet"
    assert list(t.table.value["id"]) == [b]
    t.text_filter = ""
    t.select([a])
    assert t.selected == [a]


def test_compare_and_export_in_a_thread(store, tmp_path):
    from kdlab.ui.compare import ComparePage

    a, b = _fake_run(store, "kd", rows=3, status="completed"), _fake_run(store, "vanilla", rows=3,
                                                                         status="completed")
    page = ComparePage(store)
    page.compare([a, b])
    assert [t.name for t in page.plot.object.data] == ["kd", "vanilla"]
    assert list(page.table.value["id"]) == [a, b]
    fut = page.export(tmp_path / "r.html")
    path = fut.result(timeout=60)
    page.tick()
    assert path.is_file() and "vanilla" in path.read_text()
    assert page.download.visible and page.download.file == str(path)


def test_page_registry_and_dashboard(store):
    from kdlab.ui.dashboard import Dashboard, build_app

    built = []
    pages.register_page("Extra", lambda dash: built.append(dash) or "extra page", order=50)
    try:
        with pytest.raises(Exception, match="twice"):
            pages.register_page("Extra", lambda d: None)
        rid = _fake_run(store, rows=2)
        dash = Dashboard(store)
        # built-in pages first, then the others by their order (analysis pages may sit around "Extra")
        assert dash.names[:3] == ["Runs", "Compare", "Run detail"] and "Extra" in dash.names
        assert [p.order for p in pages.pages()] == sorted(p.order for p in pages.pages())
        assert dash.components["live"].run_id == rid and built == []  # pages are built when first shown
        dash.show("Extra")
        assert built == [dash] and dash.tabs.active == dash.names.index("Extra")
        dash.show("Run detail")
        dash.open_run(rid)
        assert dash.components["detail"].run_id == rid
        dash.tick()
        assert build_app(store).dashboard.page == "Runs"
    finally:
        pages.unregister_page("Extra")


def test_run_picker_and_monitor(store):
    from kdlab.ui.widgets import RunMonitor, RunPicker

    rid = _fake_run(store, rows=2, status="completed")
    picker = RunPicker(store)
    picker.value = [rid]
    assert picker.value == [rid]
    mon = RunMonitor(RunHandle(store, rid), start=False)
    assert mon.poller.points == 2 and mon.cancel_button.disabled and mon.progress.value == 1.0
