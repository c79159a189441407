"""The Source selection page in a real browser: rank the (cached, tiny) zoo on digits and see the score matrix."""
from __future__ import annotations

import pytest
from dashboard_helpers import start_server, stop_server
from playwright.sync_api import expect

pytestmark = pytest.mark.slow


def test_source_selection_page_ranks_and_shows_score_matrix(browser, shots, tmp_path, monkeypatch):
    from kdlab.transfer import BUILTIN_SOURCES, SourceZoo

    # The page uses the default zoo; train tiny sources into its cache folder so ranking takes seconds.
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path / "cache"))
    SourceZoo(root=SourceZoo().root, arch_params={"width": 4, "depth": 2, "norm": "batchnorm"}, epochs=1,
              n_train=100).build()
    proc, url = start_server(tmp_path / "home")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(url)
        page.locator(".bk-tab", has_text="Source selection").first.click(timeout=60_000)
        expect(page.locator(".kdlab-ss-status")).to_contain_text("Rank sources", timeout=30_000)
        page.locator(".kdlab-ss-rank button").click(timeout=30_000)
        expect(page.locator(".kdlab-ss-status")).to_contain_text("Ranked 9 sources", timeout=120_000)
        heat = page.locator(".kdlab-ss-scores .js-plotly-plot").first
        heat.wait_for(timeout=30_000)
        assert heat.evaluate("el => el.data[0].type") == "heatmap"
        assert heat.evaluate("el => el.data[0].y.length") == len(BUILTIN_SOURCES)
        assert heat.evaluate("el => el.data[0].x.length") == 8  # every metric
        assert page.locator(".kdlab-ss-weights .js-plotly-plot").count() == 1
        page.screenshot(path=str(shots / "source_selection.png"), full_page=True)
        page.close()
    finally:
        stop_server(proc)
