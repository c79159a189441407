"""The Diffusion page in a real browser: a finished tiny ``diffusion`` run is picked and its views drawn from what
it saved (the quality curves carry the saved numbers; the metric dropdown redraws them; the trajectories animate
with one frame per sampling step; the snapshot slider has one step per snapshot); no text of a figure overlaps
another; a full-page screenshot is saved."""
from __future__ import annotations

import numpy as np
import pytest
from dashboard_helpers import start_server, stop_server
from diffusion_tiny import tiny_run
from playwright.sync_api import expect
from test_figure_overlap import OVERLAPS_JS, TOLERANCE_PX

from kdlab.jobs.diffusion import load_diffusion_artifacts

pytestmark = pytest.mark.slow

def plot(page, key: str):
    loc = page.locator(f".kdlab-diffusion-{key} .js-plotly-plot").first
    loc.wait_for(timeout=60_000)
    return loc


@pytest.mark.timeout(240)
def test_diffusion_page_shows_a_finished_run(browser, shots, tmp_path_factory, monkeypatch):
    home, run = tiny_run(tmp_path_factory, monkeypatch)
    proc, url = start_server(home)
    try:
        assert run.wait(timeout=180) == "completed", run.record.error
        art = load_diffusion_artifacts(run.run_dir)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(url)
        page.locator(".bk-tab", has_text="Diffusion").first.click(timeout=60_000)
        quality = plot(page, "quality")
        assert quality.evaluate("el => el.data.map(t => t.name)") == ["teacher · ddim", "student"]
        student = art.quality[art.quality["who"] == "student"].sort_values("nfe")
        ys = quality.evaluate("el => Array.from(el.data[1].y)")
        np.testing.assert_allclose(ys, student["swd"].to_numpy(), rtol=1e-9)
        expect(page.locator(".kdlab-diffusion-info")).to_contain_text("method progressive on eight_gaussians")
        page.locator(".kdlab-diffusion-metric select").select_option("mmd")
        for _ in range(100):  # the server redraws the curves in the picked metric
            if plot(page, "quality").evaluate("el => el.layout.yaxis.title.text").startswith("mmd"):
                break
            page.wait_for_timeout(200)
        ys = plot(page, "quality").evaluate("el => Array.from(el.data[1].y)")
        np.testing.assert_allclose(ys, student["mmd"].to_numpy(), rtol=1e-9)
        traj = plot(page, "trajectories")
        frames = traj.evaluate("el => el._transitionData._frames.length")
        assert frames == len(art.trajectories["teacher"]) == 9  # noise + the teacher's 8 steps
        snaps = plot(page, "snapshots")
        assert snaps.evaluate("el => el.layout.sliders[0].steps.length") == len(art.snapshots["step"])
        grid = plot(page, "grid")
        assert grid.evaluate("el => el.data.length") == 2 * len([k for k in art.samples if "_" in k])
        page.evaluate("() => document.fonts.ready")
        report = page.evaluate(OVERLAPS_JS, TOLERANCE_PX)
        mine = [f for f in report if f["width"] > 0]
        assert len(mine) >= 7, mine  # the run's views are drawn
        bad = [f"{f['title']}: {p}" for f in mine for p in f["pairs"]]
        page.screenshot(path=str(shots / "diffusion.png"), full_page=True)
        assert not bad, "overlapping figure texts:\n" + "\n".join(bad)
        page.close()
    finally:
        stop_server(proc)
