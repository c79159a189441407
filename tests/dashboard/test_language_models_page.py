"""The Language models page in a real browser: a finished ``lm_distill`` run's bits-per-byte bars carry its saved
numbers; typing a text with tags, ampersands and quotes and pressing Recompute draws its token view, shown
literally (escaped), coloured by the KL the plain call gives."""
from __future__ import annotations

import numpy as np
import pytest
from dashboard_helpers import start_server, stop_server
from playwright.sync_api import expect

from kdlab.jobs.lm_distill import load_lm_artifacts
from kdlab.ui.language_models import token_table

pytestmark = pytest.mark.slow

TINY = {"max_mb": 0.3, "max_domains": 4, "teacher_layers": 2, "teacher_width": 64, "teacher_vocab": 512,
        "teacher_steps": 30, "student_width": 32, "steps": 20, "batch_size": 8, "block_size": 32, "eval_every": 10,
        "eval_kb": 4}
TEXT = "if a < b && c > 'd':\n    print(\"<script>x</script>\")\n"


@pytest.mark.timeout(300)
def test_language_models_page_shows_a_run_and_recomputes_tokens(browser, shots, tmp_path, monkeypatch):
    import kdlab
    from kdlab.runs.store import open_store

    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path / "cache"))
    home = tmp_path / "home"
    store = open_store(home)
    run = kdlab.submit("lm_distill", store=store, **TINY)
    assert run.wait(timeout=200) == "completed", run.record.error
    art = load_lm_artifacts(run.run_dir)
    proc, url = start_server(home)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(url)
        page.locator(".bk-tab", has_text="Language models").first.click(timeout=60_000)
        bars = page.locator(".kdlab-lm-bpb .js-plotly-plot").first
        bars.wait_for(timeout=60_000)
        names = bars.evaluate("el => el.data.map(t => t.name)")
        assert names == ["teacher", "student", "no-KD student"]
        ys = bars.evaluate("el => Array.from(el.data[1].y)")
        want = art.eval[art.eval["model"] == "student"]["bpb"].to_numpy()
        np.testing.assert_allclose(ys, want, rtol=1e-9)
        expect(page.locator(".kdlab-lm-info")).to_contain_text("bits/byte")
        page.locator(".kdlab-lm-text textarea").fill(TEXT)
        page.locator(".kdlab-lm-text textarea").blur()
        page.locator(".kdlab-lm-recompute button").click(timeout=30_000)
        expect(page.locator(".kdlab-lm-token-status")).to_contain_text("mean KL", timeout=60_000)
        view = page.locator(".kdlab-lm-tokens .js-plotly-plot").first
        expect(page.locator(".kdlab-lm-tokens")).to_contain_text("Token view of your text", timeout=30_000)
        kl = view.evaluate("el => Array.from(el.data[0].marker.color)")
        np.testing.assert_allclose(kl, token_table(run.run_dir, TEXT)["kl"], rtol=1e-5)
        drawn = view.evaluate("el => Array.from(el.querySelectorAll('.bartext')).map(t => t.textContent).join('')")
        assert "<script>" in drawn.replace("·", " ") or "script" in drawn  # shown literally, as text
        assert page.locator(".kdlab-lm-tokens script").count() == 0
        page.screenshot(path=str(shots / "language_models.png"), full_page=True)
        page.close()
    finally:
        stop_server(proc)
