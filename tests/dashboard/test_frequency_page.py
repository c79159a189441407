"""The Frequency page in a real browser: pick the finished run, Compute (a ``frequency`` job done by a worker), see
band curves and Fourier heat maps with the job's saved numbers; run the GNN-to-MLP study (a ``graph_kd`` job) with
the page's defaults and see its bars and table."""
from __future__ import annotations

import numpy as np
import pytest
from dashboard_helpers import start_server, stop_server
from playwright.sync_api import expect

from kdlab.runs.job import get_job

pytestmark = pytest.mark.slow

SPEC = {"name": "freq-browser", "seed": 0, "device": "cpu", "data": {"name": "digits", "params": {"n_train": 200}},
        "teacher": {"name": "mlp", "params": {"width": 16}, "optim": {"epochs": 1, "batch_size": 64}},
        "student": {"name": "mlp", "params": {"width": 8}}, "method": {"name": "kd"},
        "optim": {"epochs": 1, "batch_size": 64}}


@pytest.mark.timeout(480)
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
        expect(page.locator(".kdlab-freq-status")).to_contain_text("press Compute", timeout=60_000)
        page.locator(".kdlab-freq-compute button").click(timeout=30_000)
        expect(page.locator(".kdlab-freq-status")).to_contain_text("done (job ", timeout=180_000)
        (job,) = store.jobs("frequency", of=rid)
        art = get_job("frequency").read(store.run_dir(job.id))
        bands = page.locator(".kdlab-freq-bands .js-plotly-plot").first
        bands.wait_for(timeout=30_000)
        names = bands.evaluate("el => el.data.map(t => t.name)")
        assert {"teacher", "student"} <= set(names) and set(art.bands["model"]) == {"teacher", "student"}
        heat = page.locator(".kdlab-freq-heatmaps .js-plotly-plot").first
        assert heat.evaluate("el => el.data.map(t => t.type)") == ["heatmap", "heatmap"]
        z = np.array(heat.evaluate("el => Array.from(el.data[0].z, r => Array.from(r))"), dtype=float)
        assert z.shape == (8, 8)  # digits are 8x8: an 8x8 frequency grid
        np.testing.assert_allclose(z, np.asarray(art.heatmaps["teacher"].error, dtype=float), atol=1e-9)
        page.locator(".kdlab-freq-agreement .js-plotly-plot").first.wait_for(timeout=30_000)
        assert art.spectra.empty and page.locator(".kdlab-freq-spectra").count() == 0  # MLPs: no feature maps

        # the GNN-to-MLP study with the page's defaults (the citation-graph regime: 1024 features, degree 4)
        expect(page.locator(".kdlab-freq-graph-status")).to_contain_text("press Run to start")
        page.locator(".kdlab-freq-graph-compute button").click(timeout=30_000)
        expect(page.locator(".kdlab-freq-graph-status")).to_contain_text("done: 1 seed(s)", timeout=300_000)
        bars = page.locator(".kdlab-freq-graph-graph .js-plotly-plot").first
        bars.wait_for(timeout=30_000)
        models = bars.evaluate("el => el.data[0].x")
        assert list(models) == ["GCN teacher", "MLP", "KD-MLP", "FF-G2M-MLP"]
        (study,) = store.jobs("graph_kd")
        table = get_job("graph_kd").read(store.run_dir(study.id))
        assert study.spec["params"]["features"] == 1024 and list(table["model"]) == list(models)
        shown = page.locator(".kdlab-freq-graph-graph-table")
        expect(shown).to_contain_text("±")
        expect(shown).to_contain_text(f"{table['test_acc'].iloc[0]:.3f} ± {table['test_acc_std'].iloc[0]:.3f}")
        page.screenshot(path=str(shots / "frequency.png"), full_page=True)
        page.close()
    finally:
        stop_server(proc)
