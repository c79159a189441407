"""notebooks/02_representations.ipynb executed headless with small parameters (nbclient): the plain calls in the
kernel, and the widget analysing a KD run launched into a temporary store (a ``cka`` job)."""
from __future__ import annotations

import pytest
from nb_helpers import run_notebook

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TEACHER_LAYERS = ["features.0", "features.1", "features.2", "classifier"]
STUDENT_LAYERS = ["blocks.0", "blocks.1", "blocks.2", "head"]


def test_representations_notebook_runs(tmp_path):
    res = run_notebook(
        "02_representations.ipynb", tmp_path,
        "{'epochs': sorted(recorder.frame()['epoch'].unique().tolist()), "
        "'grid': [list(grid.index), list(grid.columns)], "
        "'kd': kd.status, 'job': [widget.task.kind, widget.task.status, widget.params['run'] == kd.id], "
        "'cka': [list(rep.cka.index), list(rep.cka.columns)], 'n': rep.cka.attrs['n_samples'], "
        "'cka_range': bool(((rep.cka >= -1e-6) & (rep.cka <= 1 + 1e-6)).all().all()), "
        "'top1': float(rep.agreement.top1), 'emb': [len(rep.embedding['labels']), rep.embedding['teacher'].shape[1]], "
        "'figures': len(widget.out.outputs), 'ranked': sorted(ranking['candidate'])}",
        timeout=300, n_train=300, teacher_epochs=1, student_epochs=1, max_samples=200, width=8, embedding="pca",
        store_path=str(tmp_path / "store"))
    assert res["epochs"] == [0, 1], res  # CKARecorder: before training and after its one epoch
    assert res["grid"] == [TEACHER_LAYERS, STUDENT_LAYERS], res
    assert res["kd"] == "completed" and res["job"] == ["cka", "completed", True], res
    assert res["cka"] == [TEACHER_LAYERS, STUDENT_LAYERS] and res["n"] == 200 and res["cka_range"], res
    assert 0.0 <= res["top1"] <= 1.0 and res["emb"] == [200, 2], res
    assert res["figures"] == 3, res  # CKA heat map, agreement panel, embeddings
    assert res["ranked"] == ["convnet-16", "convnet-8", "mlp-256", "vit"], res
