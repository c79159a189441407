"""The Representations page in a real browser: pick the finished run, Compute (a ``cka`` job done by a worker
process forked by the server's fork server), see the CKA heat map with the job's saved numbers; a reloaded page (a
new session) shows it again without a new job."""
from __future__ import annotations

import numpy as np
import pytest
from dashboard_helpers import page_with_run
from playwright.sync_api import expect

from kdlab.runs.job import get_job
from kdlab.runs.store import open_store

pytestmark = pytest.mark.slow


@pytest.mark.timeout(300)
def test_representations_page_computes_and_shows_heatmap(browser, shots, tmp_path):
    home = tmp_path / "home"
    with page_with_run(browser, home, "Representations", name="repr-browser") as page:
        status = page.locator(".kdlab-repr-status")
        expect(status).to_contain_text("press Compute", timeout=60_000)
        assert page.locator(".kdlab-repr-heatmap").count() == 0  # no figure before there is a result
        page.locator(".kdlab-repr-compute button").click(timeout=30_000)
        expect(status).to_contain_text("done (job ", timeout=180_000)
        store = open_store(home)
        (job,) = store.jobs("cka")
        assert job.status == "completed" and store.get_run(job.spec["params"]["run"]).name == "repr-browser"
        # its worker was forked by the server's fork server (imports done: issue #25), not started as a process
        assert "forked by the fork server" in (store.run_dir(job.id) / "worker.log").read_text()
        saved = get_job("cka").read(store.run_dir(job.id)).cka
        heat = page.locator(".kdlab-repr-heatmap .js-plotly-plot").first
        heat.wait_for(timeout=30_000)
        assert heat.evaluate("el => el.data[0].type") == "heatmap"
        z = np.array(heat.evaluate("el => Array.from(el.data[0].z, r => Array.from(r))"), dtype=float)
        assert z.shape == (3, 3)  # blocks.0, blocks.1, head of both MLPs
        np.testing.assert_allclose(z, saved.to_numpy(), atol=1e-9)
        assert_cells_in_place(heat, saved)
        assert page.locator(".kdlab-repr-agreement .js-plotly-plot").count() == 1
        assert page.locator(".kdlab-repr-embeddings .js-plotly-plot").count() == 1
        page.screenshot(path=str(shots / "representations.png"), full_page=True)

        page.reload()  # a new session: the job's result, not a new job
        page.locator(".bk-tab", has_text="Representations").first.click(timeout=60_000)
        expect(page.locator(".kdlab-repr-status")).to_contain_text(f"done (job {job.id})", timeout=60_000)
        heat = page.locator(".kdlab-repr-heatmap .js-plotly-plot").first
        heat.wait_for(timeout=30_000)
        z = np.array(heat.evaluate("el => Array.from(el.data[0].z, r => Array.from(r))"), dtype=float)
        np.testing.assert_allclose(z, saved.to_numpy(), atol=1e-9)
        assert_cells_in_place(heat, saved)
        assert [r.id for r in store.jobs("cka")] == [job.id]


def assert_cells_in_place(heat, saved) -> None:
    """Each drawn cell sits at its own (teacher layer, student layer): the row and column labels are the saved
    grid's, in its order, and on screen the teacher's first layer is the top row (rows read top to bottom)."""
    assert heat.evaluate("el => Array.from(el.data[0].y)") == list(saved.index)
    assert heat.evaluate("el => Array.from(el.data[0].x)") == list(saved.columns)
    ticks = heat.evaluate("el => Array.from(el.querySelectorAll('.ytick text'), "
                          "t => [t.textContent, t.getBoundingClientRect().top])")
    assert [name for name, _top in sorted(ticks, key=lambda t: t[1])] == list(saved.index), ticks
