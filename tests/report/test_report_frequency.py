"""The report's Frequency section: the figures of the run's newest completed frequency job, none without one; a
graph_kd job's own report shows its bars."""
from __future__ import annotations

import numpy as np
from report_helpers import stored_run

import kdlab
from kdlab.report import build, load_run, report_figures, run_from_store
from kdlab.report.frequency import frequency_section


def test_section_reads_the_frequency_job_of_the_run(experiment_dir, tmp_path):
    store = kdlab.open_store(tmp_path / "store")
    rid = stored_run(store, experiment_dir)
    assert frequency_section(run_from_store(store, rid)) == []  # no job yet
    job = kdlab.submit("frequency", store, run=rid, split="test", n_images=80, heatmap_images=12, eps=2.0,
                       device="cpu")
    assert job.wait(timeout=180) == "completed", job.record.error
    art = job.result()
    assert set(art.heatmaps) == {"teacher", "student"} and art.heatmaps["teacher"].error.shape == (8, 8)
    run = load_run(store.run_dir(rid))
    kinds = [k for k, _t, _f in frequency_section(run)]
    assert kinds == ["frequency-bands", "frequency-agreement", "fourier-heatmap"]  # MLPs: no feature maps
    figs = {f.id: f.figure for f in report_figures([run]).all()}
    bands = figs["kdlab-run0-frequency-bands"]
    teacher_low = next(t for t in bands.data if t.name == "teacher" and t.xaxis == "x")
    expected = art.bands[(art.bands.model == "teacher") & (art.bands["filter"] == "low")].sort_values("cutoff").acc
    assert np.allclose(teacher_low.y, expected)
    heat = figs["kdlab-run0-fourier-heatmap"]
    assert np.allclose(np.asarray(heat.data[0].z, dtype=float), art.heatmaps["teacher"].error)
    assert "kdlab-run0-fourier-heatmap" in build([run], tmp_path / "r.html")
    study = kdlab.submit("graph_kd", store, nodes=200, epochs=5, features=16, device="cpu")
    assert study.wait(timeout=180) == "completed", study.record.error
    own = run_from_store(store, study.id)  # a job's report shows what the job saved
    assert [k for k, _t, _f in frequency_section(own)] == ["graph-energy"]
    assert "kdlab-run0-graph-energy" in build([own], tmp_path / "g.html")
