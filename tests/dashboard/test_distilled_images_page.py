"""The Distilled images page in a real browser: a finished condensation run's grid renders, the slider
moves to an earlier snapshot, and the nearest-neighbour search shows its figures."""
from __future__ import annotations

import pytest
from dashboard_helpers import start_server, stop_server
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

NET = {"width": 16, "depth": 2}
SPEC = {"name": "dm-browser", "task": "condense", "seed": 0, "device": "cpu",
        "data": {"name": "digits", "params": {"n_train": 200}},
        "condense": {"params": {"method": "dm", "ipc": 2, "iterations": 4, "snapshot_every": 2, "batch_real": 16,
                                "model_params": NET},
                     "evaluation": {"epochs": 2, "n_nets": 1, "model_params": {"convnet": NET}}}}


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
        expect(page.locator(".kdlab-distilled-status")).to_contain_text("3 snapshots", timeout=30_000)
        page.locator(".kdlab-distilled-neighbours button").click(timeout=30_000)
        expect(page.locator(".kdlab-distilled-status")).to_contain_text("done", timeout=120_000)
        page.screenshot(path=str(shots / "distilled_images.png"), full_page=True)
        page.close()
    finally:
        stop_server(proc)
