"""The Distilled images page in a real browser: a finished condensation run's grid renders, the slider moves to an
earlier snapshot, and the nearest-neighbour search (a ``neighbours`` job done by a worker) of that snapshot shows
its figures."""
from __future__ import annotations

import time

import pytest
from dashboard_helpers import start_server, stop_server
from playwright.sync_api import expect

from kdlab.runs.job import get_job

pytestmark = pytest.mark.slow

NET = {"width": 16, "depth": 2}
SPEC = {"name": "dm-browser", "task": "condense", "seed": 0, "device": "cpu",
        "data": {"name": "digits", "params": {"n_train": 200}},
        "condense": {"params": {"method": "dm", "ipc": 2, "iterations": 4, "snapshot_every": 2, "batch_real": 16,
                                "model_params": NET},
                     "evaluation": {"epochs": 2, "n_nets": 1, "model_params": {"convnet": NET}}}}


@pytest.mark.timeout(300)
def test_distilled_images_page_shows_the_grid_and_neighbours(browser, shots, tmp_path):
    from kdlab.jobs.condense import run_condensation
    from kdlab.runs.store import open_store

    home = tmp_path / "home"
    store = open_store(home)
    rid = store.create_run(SPEC, status="completed")
    run_condensation(SPEC, store.run_dir(rid))
    proc, url = start_server(home)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(url)
        page.locator(".bk-tab", has_text="Distilled images").first.click(timeout=60_000)
        grid = page.locator(".kdlab-distilled-grid .js-plotly-plot").first
        grid.wait_for(timeout=60_000)
        assert grid.evaluate("el => el.data[0].type") == "image"
        expect(page.locator(".kdlab-distilled-view")).to_contain_text("20 images, 2 per class; 3 snapshots",
                                                                      timeout=30_000)
        expect(page.locator(".kdlab-distilled-status")).to_contain_text("press Nearest neighbours")
        assert grid.evaluate("el => el.layout.title.text") == "synthetic images per class (iteration 4)"
        handle = page.locator(".kdlab-distilled-slider .noUi-handle").first
        handle.focus()
        handle.press("ArrowLeft")
        handle.press("ArrowLeft")  # snapshots 0, 2, 4: two steps back is the first one
        expect(page.locator(".kdlab-distilled-slider").first).to_contain_text("iteration: 0")
        title = "el => el.layout.title.text"
        deadline = time.monotonic() + 30
        while grid.evaluate(title) != "synthetic images per class (iteration 0)":  # the grid is redrawn
            assert time.monotonic() < deadline, grid.evaluate(title)
            time.sleep(0.1)

        page.locator(".kdlab-distilled-compute button").click(timeout=30_000)
        expect(page.locator(".kdlab-distilled-status")).to_contain_text("done (job ", timeout=180_000)
        (job,) = store.jobs("neighbours", of=rid)
        assert job.spec["params"]["iteration"] == 0  # the snapshot the slider shows
        saved = get_job("neighbours").read(store.run_dir(job.id))
        assert saved.iteration == 0 and saved.neighbours.shape[:2] == (10, 5)
        near = page.locator(".kdlab-distilled-neighbours .js-plotly-plot").first
        near.wait_for(timeout=30_000)
        assert near.evaluate("el => el.data[0].type") == "image"
        assert near.evaluate("el => el.layout.yaxis.ticktext.length") == 10  # a row per class
        page.locator(".kdlab-distilled-means .js-plotly-plot").first.wait_for(timeout=30_000)
        page.screenshot(path=str(shots / "distilled_images.png"), full_page=True)
        page.close()
    finally:
        stop_server(proc)
