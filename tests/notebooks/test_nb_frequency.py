"""notebooks/04_frequency.ipynb executed headless with small parameters (nbclient): a KD run and a vanilla run
launched into a temporary store, the ``frequency`` job on them and the ``graph_kd`` study, through the widgets."""
from __future__ import annotations

import pytest
from nb_helpers import run_notebook

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MODELS = ["frequency-vanilla", "student", "teacher"]  # compared runs are named by their run name


def test_frequency_notebook_runs(tmp_path):
    res = run_notebook(
        "04_frequency.ipynb", tmp_path,
        "{'runs': [kd.status, vanilla.status], 'jobs': [freq.task.status, graph.task.status], "
        "'compare': freq.task.record.spec['params']['compare'] == [vanilla.id], "
        "'models': sorted(art.bands.model.unique()), 'maps': sorted(art.heatmaps), "
        "'n': art.heatmaps['teacher'].n_images, 'filters': sorted(art.bands['filter'].unique()), "
        "'cutoffs': int(art.bands.cutoff.nunique()), 'spectra': sorted(art.spectra.model.unique()), "
        "'acc': bool(art.bands.acc.between(0, 1).all()), 'figures': len(freq.out.outputs), "
        "'graph': table.model.tolist(), 'seeds': table.seeds.tolist(), 'graph_figures': len(graph.out.outputs)}",
        timeout=300, n_train=300, teacher_epochs=1, student_epochs=1, teacher_width=8, student_width=4,
        n_images=60, heatmap_images=8, eps=4.0, graph_nodes=200, graph_epochs=20, seeds=1, homophily=0.8,
        graph_features=16, graph_signal=0.5, avg_degree=4.0, store_path=str(tmp_path / "store"))
    assert res["runs"] == ["completed", "completed"] and res["jobs"] == ["completed", "completed"], res
    assert res["compare"], res
    assert res["models"] == MODELS and res["maps"] == MODELS and res["spectra"] == MODELS and res["n"] == 8, res
    assert res["filters"] == ["high", "low", "none"] and res["cutoffs"] == 10 and res["acc"], res
    assert res["figures"] == 4, res  # bands, agreement, heat maps, spectra
    assert res["graph"] == ["GCN teacher", "MLP", "KD-MLP", "FF-G2M-MLP"] and res["seeds"] == [1] * 4, res
    assert res["graph_figures"] == 2, res  # energy bars and the mean ± std table
