"""The report's Representations section: figures from a run folder's saved artifacts, none without them."""
from __future__ import annotations

import shutil

import numpy as np

from kdlab.report import build, load_run, report_figures
from kdlab.report.representations import load_cka, representations_section


def test_section_reads_the_artifacts_the_page_saves(experiment_dir, tmp_path):
    from kdlab.ui.representations import analyze_run

    folder = tmp_path / "run"
    shutil.copytree(experiment_dir, folder)
    assert representations_section(load_run(folder)) == []  # no artifacts yet
    rep = analyze_run(None, folder, split="val", max_samples=90, batch_size=45)
    run = load_run(folder)
    kinds = [k for k, _t, _f in representations_section(run)]
    assert kinds == ["cka", "agreement", "embeddings"]
    saved = load_cka(folder)
    assert np.allclose(saved.to_numpy(), rep.cka.to_numpy(), atol=1e-12) and saved.attrs["n_samples"] == 90
    figs = [f for f in report_figures([run]).all() if f.id.endswith("-cka")]
    assert len(figs) == 1 and np.allclose(np.asarray(figs[0].figure.data[0].z, dtype=float), rep.cka.to_numpy())
    html = build([run], tmp_path / "r.html")
    assert "kdlab-run0-cka" in html and "kdlab-run0-embeddings" in html and "kdlab-run0-agreement" in html
