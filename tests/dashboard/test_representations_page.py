"""The Representations page in a real browser: pick the finished run, Compute, see the CKA heatmap."""
from __future__ import annotations

import pytest
from dashboard_helpers import page_with_run
from playwright.sync_api import expect

pytestmark = pytest.mark.slow


def test_representations_page_computes_and_shows_heatmap(browser, shots, tmp_path):
    with page_with_run(browser, tmp_path / "home", "Representations", name="repr-browser") as page:
        page.locator(".kdlab-repr-compute button").click(timeout=30_000)
        expect(page.locator(".kdlab-repr-status")).to_contain_text("done", timeout=120_000)
        heat = page.locator(".kdlab-repr-heatmap .js-plotly-plot").first
        heat.wait_for(timeout=30_000)
        assert heat.evaluate("el => el.data[0].type") == "heatmap"
        assert heat.evaluate("el => el.data[0].z.length") == 3  # blocks.0, blocks.1, head
        page.screenshot(path=str(shots / "representations.png"), full_page=True)
