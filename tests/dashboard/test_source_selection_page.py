"""The Source selection page in a real browser: rank the (cached, tiny) default zoo on digits in a ``transfer_rank``
job and see the score matrix and the weights, with the job's saved numbers."""
from __future__ import annotations

import numpy as np
import pytest
from dashboard_helpers import start_server, stop_server
from playwright.sync_api import expect

pytestmark = pytest.mark.slow


@pytest.mark.timeout(420)
def test_source_selection_page_ranks_and_shows_score_matrix(browser, shots, tmp_path, monkeypatch):
    from kdlab.runs.job import get_job
    from kdlab.runs.store import open_store
    from kdlab.transfer import BUILTIN_SOURCES, SourceZoo, source_weights

    # The page's form names the default zoo; tiny sources trained into its cache folder (the server and its
    # workers get this KDLAB_CACHE) make the ranking take seconds.
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path / "cache"))
    SourceZoo(root=SourceZoo().root, arch_params={"width": 4, "depth": 2, "norm": "batchnorm"}, epochs=1,
              n_train=100).build()
    home = tmp_path / "home"
    proc, url = start_server(home)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(url)
        page.locator(".bk-tab", has_text="Source selection").first.click(timeout=60_000)
        expect(page.locator(".kdlab-ss-status")).to_contain_text("Rank sources", timeout=30_000)
        page.locator(".kdlab-ss-compute button").click(timeout=30_000)
        expect(page.locator(".kdlab-ss-status")).to_contain_text("Ranked 9 sources", timeout=240_000)
        store = open_store(home)
        (job,) = store.jobs("transfer_rank")
        assert job.status == "completed" and job.spec["params"]["zoo_root"] is None  # the default zoo
        scores = get_job("transfer_rank").read(store.run_dir(job.id))["scores"]
        heat = page.locator(".kdlab-ss-scores .js-plotly-plot").first
        heat.wait_for(timeout=30_000)
        assert heat.evaluate("el => el.data[0].type") == "heatmap"
        rows, cols = heat.evaluate("el => el.data[0].y"), heat.evaluate("el => el.data[0].x")
        assert rows == [d.name for d in BUILTIN_SOURCES] == list(scores.index)
        assert cols == list(scores.columns) and len(cols) == 8  # every metric
        text = heat.evaluate("el => Array.from(el.data[0].text, r => Array.from(r))")
        assert text == [[f"{v:.3g}" for v in row] for row in scores.to_numpy()]  # the saved raw scores
        bars = page.locator(".kdlab-ss-weights .js-plotly-plot").first
        bars.wait_for(timeout=30_000)
        want = source_weights(scores, 0.5, "linear_probe").sort_values(ascending=False)
        assert bars.evaluate("el => el.data[0].x") == list(want.index)
        np.testing.assert_allclose(bars.evaluate("el => Array.from(el.data[0].y)"), want.to_numpy(), rtol=1e-9)
        page.screenshot(path=str(shots / "source_selection.png"), full_page=True)
        page.close()
    finally:
        stop_server(proc)
