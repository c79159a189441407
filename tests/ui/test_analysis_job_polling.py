"""A page waiting on a job it started is ``busy`` and the dashboard's fast callback (``tick_busy``) polls it, so its
result is drawn soon after the job ends; idle pages are left to the 1 s poll. The Distilled images page is busy
from Launch until the launched run's first snapshot is drawn."""
from __future__ import annotations

import pytest

from kdlab.runs.background import RunHandle
from kdlab.ui.dashboard import BUSY_POLL_MS, POLL_MS, Dashboard
from kdlab.ui.job_panel import JobPanel


class Counting:
    """A component that counts its ticks; ``busy`` as given."""

    def __init__(self, busy: bool):
        self.busy, self.ticks = busy, 0

    def tick(self) -> None:
        self.ticks += 1


def test_the_fast_callback_polls_only_busy_components(store):
    dash = Dashboard(store)
    idle, waiting = Counting(False), Counting(True)
    dash.components.update(idle=idle, waiting=waiting)
    dash.tick_busy()
    dash.tick_busy()
    assert (idle.ticks, waiting.ticks) == (0, 2)
    dash.tick()  # the 1 s poll still ticks everything
    assert (idle.ticks, waiting.ticks) == (1, 3)
    waiting.busy = False
    dash.tick_busy()
    assert waiting.ticks == 3
    assert BUSY_POLL_MS < POLL_MS


@pytest.mark.timeout(120)
def test_a_job_panel_is_busy_from_its_button_until_its_result_is_drawn(store, gated_kind, tmp_path):
    shown = []
    panel = JobPanel(store, gated_kind, lambda r: shown.append(r) or {}, "gated",
                     fixed=lambda: {"gate": str(tmp_path), "steps": 1})
    assert not panel.busy  # nothing submitted
    task = panel.compute()
    assert panel.busy
    panel.tick()
    assert panel.busy and not shown  # still running (its gate is closed)
    (tmp_path / "go1").touch()
    assert RunHandle(store, task.id).wait(timeout=90) == "completed", task.record.error
    assert panel.busy  # ended, not drawn yet
    panel.tick()
    assert not panel.busy and len(shown) == 1
    again = JobPanel(store, gated_kind, lambda r: {}, "gated")  # a new session follows the finished job
    assert again.follow().id == task.id
    assert not again.busy  # drawn at once by follow's own tick


@pytest.mark.timeout(240)
def test_distilled_images_page_is_busy_until_the_launched_runs_first_snapshot(store, monkeypatch):
    from test_distilled_images import SPEC

    import kdlab.ui.distilled_images as di
    from kdlab.jobs.condense import run_condensation

    launched = {}

    def record(st, **_params):  # the run a Launch would start, run below in the foreground
        launched["id"] = st.create_run(SPEC, status="running")
        return launched["id"]

    monkeypatch.setattr(di, "launch_condensation", record)
    page = di.DistilledImagesPage(store)
    assert not page.busy
    rid = page.launch()
    assert page.run_id == rid and page.busy
    page.tick()
    assert page.busy and page.grid.visible is False  # no snapshot yet
    run_condensation(SPEC, store.run_dir(rid))
    page.tick()
    assert not page.busy and page.grid.visible and page.status.object.startswith("10 images")
