"""The Frequency page in a real browser: pick the finished run, Compute, see band curves and Fourier heat maps;
run the GNN-to-MLP study and see its bars."""
from __future__ import annotations

import pytest
from dashboard_helpers import start_server, stop_server
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

SPEC = {"name": "freq-browser", "seed": 0, "device": "cpu", "data": {"name": "digits", "params": {"n_train": 200}},
        "teacher": {"name": "mlp", "params": {"width": 16}, "optim": {"epochs": 1, "batch_size": 64}},
        "student": {"name": "mlp", "params": {"width": 8}}, "method": {"name": "kd"},
        "optim": {"epochs": 1, "batch_size": 64}}


def test_frequency_page_computes_and_shows_band_curves(browser, shots, tmp_path):
    from kdlab.runs.experiment import run_experiment
    from kdlab.runs.store import open_store

    home = tmp_path / "home"
    store = open_store(home)
    rid = store.create_run(SPEC, status="completed")
    run_experiment(SPEC, run_dir=store.run_dir(rid))
    proc, url = start_server(home)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(url)
        page.locator(".bk-tab", has_text="Frequency").first.click(timeout=60_000)
        page.locator(".kdlab-freq-compute button").click(timeout=30_000)
        expect(page.locator(".kdlab-freq-status")).to_contain_text("done", timeout=120_000)
        bands = page.locator(".kdlab-freq-bands .js-plotly-plot").first
        bands.wait_for(timeout=30_000)
        names = bands.evaluate("el => el.data.map(t => t.name)")
        assert {"teacher", "student"} <= set(names)
        heat = page.locator(".kdlab-freq-heatmaps .js-plotly-plot").first
        assert heat.evaluate("el => el.data[0].type") == "heatmap"
        assert heat.evaluate("el => el.data[0].z.length") == 8  # digits are 8x8: an 8x8 frequency grid
        # the GNN-to-MLP study with the page's defaults (the citation-graph regime: 1024 features, degree 4)
        page.locator(".kdlab-freq-graph-run button").click(timeout=30_000)
        expect(page.locator(".kdlab-freq-graph-status")).to_contain_text("done: 1 seed(s)", timeout=240_000)
        bars = page.locator(".kdlab-freq-graph .js-plotly-plot").first
        bars.wait_for(timeout=30_000)
        models = bars.evaluate("el => el.data[0].x")
        assert list(models) == ["GCN teacher", "MLP", "KD-MLP", "FF-G2M-MLP"]
        page.screenshot(path=str(shots / "frequency.png"), full_page=True)
        page.close()
    finally:
        stop_server(proc)
