"""The report's Representations section: the figures of the newest completed cka job of a run (found through the
store, whether the run is given by id or by its folder), none without one."""
from __future__ import annotations

import numpy as np
from report_helpers import stored_run

import kdlab
from kdlab.report import build, load_run, report_figures, run_from_store
from kdlab.report.representations import representations_section
from kdlab.runs.job import get_job


def test_section_reads_the_cka_job_of_the_run(experiment_dir, tmp_path):
    store = kdlab.open_store(tmp_path / "store")
    rid = stored_run(store, experiment_dir)
    assert representations_section(run_from_store(store, rid)) == []  # no cka job yet
    job = kdlab.submit("cka", store, run=rid, max_samples=90, batch_size=45, device="cpu")
    assert job.wait(timeout=180) == "completed", job.record.error
    saved = get_job("cka").read(job.run_dir).cka
    assert saved.attrs["n_samples"] == 90 and list(saved.index) == ["blocks.0", "blocks.1", "head"]
    for run in (run_from_store(store, rid), load_run(store.run_dir(rid))):  # by id, or by folder in the store
        assert run.analyses["cka"] == job.run_dir
        kinds = [k for k, _t, _f in representations_section(run)]
        assert kinds == ["cka", "agreement", "embeddings"]
    run = run_from_store(store, rid)
    figs = [f for f in report_figures([run]).all() if f.id.endswith("-cka")]
    assert len(figs) == 1 and np.allclose(np.asarray(figs[0].figure.data[0].z, dtype=float), saved.to_numpy())
    html = build([run], tmp_path / "r.html")
    assert "kdlab-run0-cka" in html and "kdlab-run0-embeddings" in html and "kdlab-run0-agreement" in html
    assert representations_section(load_run(experiment_dir)) == []  # a folder outside any store: none
