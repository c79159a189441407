"""A job outlives the dashboard server that started it: Compute on the Representations page starts a ``cka`` job
(a worker process with its own session); the server is stopped while the job runs; a new server on the same store
shows the job's progress and then its CKA heat map, with the numbers the job saved, and starts no second job."""
from __future__ import annotations

import re

import numpy as np
import psutil
import pytest
from dashboard_helpers import TINY_SPEC, start_server, stop_server
from playwright.sync_api import expect
from waiting import wait_for

from kdlab.runs.job import get_job
from kdlab.runs.store import open_store

pytestmark = pytest.mark.slow


def open_representations(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(url)
    page.locator(".bk-tab", has_text="Representations").first.click(timeout=60_000)
    return page


def heat_z(page) -> np.ndarray:
    heat = page.locator(".kdlab-repr-heatmap .js-plotly-plot").first
    heat.wait_for(timeout=30_000)
    assert heat.evaluate("el => el.data[0].type") == "heatmap"
    return np.array(heat.evaluate("el => Array.from(el.data[0].z, r => Array.from(r))"), dtype=float)


@pytest.mark.timeout(420)
def test_cka_job_survives_a_server_restart_and_its_heatmap_is_shown(browser, shots, tmp_path):
    from kdlab.runs.experiment import run_experiment

    home = tmp_path / "home"
    store = open_store(home)
    spec = {**TINY_SPEC, "name": "survivor"}
    trained = store.create_run(spec, status="completed")
    run_experiment(spec, run_dir=store.run_dir(trained))

    proc, url = start_server(home)
    try:
        page = open_representations(browser, url)
        expect(page.locator(".kdlab-repr-status")).to_contain_text("press Compute", timeout=60_000)
        # UMAP embeddings (numba compiles them first) keep the job busy for several seconds
        page.locator("select:has(option[value='umap'])").select_option("umap")
        page.locator(".kdlab-repr-compute button").click(timeout=30_000)
        job = wait_for(lambda: next(iter(store.jobs("cka")), None), 30, what="the cka job in the store")
        rec = wait_for(lambda: (r := store.get_run(job.id)).pid is not None and r, 30, what="the worker's pid")
        assert rec.spec["params"]["run"] == trained and rec.spec["params"]["embedding"] == "umap"
        expect(page.locator(".kdlab-repr-status")).to_contain_text("computing", timeout=30_000)
        page.screenshot(path=str(shots / "job_survives_server_before.png"), full_page=True)
    finally:
        stop_server(proc)
    assert proc.returncode is not None  # the server is gone ...
    worker = psutil.Process(rec.pid)
    assert worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE  # ... its job's worker is not
    assert store.get_run(job.id).status == "running"
    page.close()

    proc, url = start_server(home)  # a new server on the same store
    try:
        page = open_representations(browser, url)
        status = page.locator(".kdlab-repr-status")
        # the job's live progress (or, if it finished meanwhile, its result), never "press Compute"
        expect(status).to_contain_text(re.compile(rf"computing|done \(job {job.id}\)"), timeout=60_000)
        page.screenshot(path=str(shots / "job_survives_server_restarted.png"), full_page=True)
        expect(status).to_contain_text(f"done (job {job.id})", timeout=240_000)
        final = store.get_run(job.id)
        assert final.status == "completed" and final.attempt == 1  # the same worker finished it, not a rerun
        saved = get_job("cka").read(store.run_dir(job.id)).cka
        z = heat_z(page)
        assert z.shape == (3, 3)
        np.testing.assert_allclose(z, saved.to_numpy(), atol=1e-9)
        assert [r.id for r in store.jobs("cka")] == [job.id]  # no second job was started
        assert page.locator("select:has(option[value='umap'])").input_value() == "umap"  # the job's parameters
        page.screenshot(path=str(shots / "job_survives_server.png"), full_page=True)
        page.close()
    finally:
        stop_server(proc)
