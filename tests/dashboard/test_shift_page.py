"""The Shift page in a real browser: its source selection part ranks the (cached, tiny) default zoo on digits in a
``transfer_rank`` job and shows the score matrix and the weights, while a ``shift`` job started beside it runs; the
page follows that job and draws its studies (targets table, accuracy per target, the metrics' Kendall taus, the
pair-gain heat map, adaptation curves) with the job's saved numbers."""
from __future__ import annotations

import numpy as np
import pytest
from dashboard_helpers import start_server, stop_server
from playwright.sync_api import expect

pytestmark = pytest.mark.slow


@pytest.mark.timeout(420)
def test_shift_page_shows_the_studies_and_ranks_sources(browser, shots, tmp_path, monkeypatch):
    from kdlab.jobs.shift import load_shift
    from kdlab.runs import submit
    from kdlab.runs.job import get_job
    from kdlab.runs.store import open_store
    from kdlab.transfer import BUILTIN_SOURCES, SourceZoo, source_weights

    # The page's form names the default zoo; tiny sources trained into its cache folder (the server and its
    # workers get this KDLAB_CACHE) make the ranking take seconds.
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path / "cache"))
    SourceZoo(root=SourceZoo().root, arch_params={"width": 4, "depth": 2, "norm": "batchnorm"}, epochs=1,
              n_train=100).build()
    home = tmp_path / "home"
    # the studies run while the server starts and the page ranks the zoo (two workers, two cores)
    studies = submit("shift", open_store(home), studies=["benchmark", "complementary", "source_free"],
                     targets=["digits_invert"], scale=0.05, labels_per_class=2,
                     sources=["mnist", "mnist_invert", "mnist_0to4"],
                     zoo_root=str(SourceZoo().root), zoo_width=4, zoo_depth=2, zoo_epochs=1, zoo_n_train=100)
    proc, url = start_server(home)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(url)
        page.locator(".bk-tab", has_text="Shift").first.click(timeout=60_000)
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
        assert studies.wait(timeout=240) == "completed", studies.record.error
        saved = load_shift(studies.run_dir)
        expect(page.locator(".kdlab-shift-status")).to_contain_text(
            "3 studies done: benchmark, complementary, source_free", timeout=60_000)
        (t,) = saved["studies"]["benchmark"]["targets"]
        bars = page.locator(".kdlab-shift-benchmark .js-plotly-plot").first
        bars.wait_for(timeout=30_000)
        got = {tr["name"]: tr["y"] for tr in bars.evaluate("el => el.data.map(t => ({name: t.name, y: t.y}))")}
        assert got["DistillWeighted"] == pytest.approx([100 * t["methods"]["weighted"]])
        assert got["scratch"] == pytest.approx([100 * t["methods"]["scratch"]])
        heat = page.locator(".kdlab-shift-taus .js-plotly-plot").first
        assert heat.evaluate("el => el.data[0].type") == "heatmap"
        assert heat.evaluate("el => el.data[0].x") == list(t["taus"])
        pairs = page.locator(".kdlab-shift-pair_gains .js-plotly-plot").first
        pairs.wait_for(timeout=30_000)
        comp = saved["studies"]["complementary"]
        assert pairs.evaluate("el => el.data[0].y") == comp["names"]  # rows: teachers
        z = pairs.evaluate("el => Array.from(el.data[0].z, r => Array.from(r, v => Number.isFinite(v) ? v : null))")
        assert [[v is None for v in row] for row in z] == [[i == j for j in range(len(row))] for i, row in enumerate(z)]
        assert [[v for v in row if v is not None] for row in z] == [
            [pytest.approx(v) for v in row if v is not None] for row in comp["gains"]]  # blank diagonal only
        curves = page.locator(".kdlab-shift-adaptation .js-plotly-plot").first
        curves.wait_for(timeout=30_000)
        n_lines = curves.evaluate("el => el.data.length")
        assert n_lines >= len(saved["studies"]["source_free"]["curves"]) * 2  # GLC and LPLD per target
        expect(page.locator(".kdlab-shift-targets")).to_contain_text("digits_invert")
        page.screenshot(path=str(shots / "shift.png"), full_page=True)
        page.close()
    finally:
        stop_server(proc)
