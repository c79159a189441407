"""The report's Frequency section: figures from the artifacts the Frequency page saves, none without them."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd

from kdlab.analysis.frequency import FrequencyArtifacts
from kdlab.report import build, load_run, report_figures
from kdlab.report.frequency import frequency_section


def test_section_reads_the_artifacts_the_page_saves(experiment_dir, tmp_path):
    from kdlab.ui.frequency import analyze_run

    folder = tmp_path / "run"
    shutil.copytree(experiment_dir, folder)
    assert frequency_section(load_run(folder)) == []  # no artifacts yet
    art = analyze_run(None, folder, split="test", n_images=80, heatmap_images=12, eps=2.0, cutoffs=[0.3, 0.7])
    assert set(art.heatmaps) == {"teacher", "student"} and art.heatmaps["teacher"].error.shape == (8, 8)
    run = load_run(folder)
    kinds = [k for k, _t, _f in frequency_section(run)]
    assert kinds == ["frequency-bands", "frequency-agreement", "fourier-heatmap"]  # MLPs: no feature maps
    figs = {f.id: f.figure for f in report_figures([run]).all()}
    bands = figs["kdlab-run0-frequency-bands"]
    teacher_low = next(t for t in bands.data if t.name == "teacher" and t.xaxis == "x")
    expected = art.bands[(art.bands.model == "teacher") & (art.bands["filter"] == "low")].sort_values("cutoff").acc
    assert np.allclose(teacher_low.y, expected)
    heat = figs["kdlab-run0-fourier-heatmap"]
    assert np.allclose(np.asarray(heat.data[0].z, dtype=float), art.heatmaps["teacher"].error)
    # a graph study saved into the same run adds its bars
    FrequencyArtifacts(graph=pd.DataFrame({"model": ["GCN teacher", "MLP"], "high_fraction": [0.1, 0.3]})).save(folder)
    assert [k for k, _t, _f in frequency_section(load_run(folder))][-1] == "graph-energy"
    html = build([load_run(folder)], tmp_path / "r.html")
    assert "kdlab-run0-fourier-heatmap" in html and "kdlab-run0-graph-energy" in html
