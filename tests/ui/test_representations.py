"""The Representations component on a real finished run: background compute, figures, saved artifacts."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kdlab.analysis.cka import cka_matrix
from kdlab.ui.representations import RepresentationsPage, RepresentationsWidget, default_layers, run_models

SPEC = {"name": "repr-kd", "seed": 0, "device": "cpu", "data": {"name": "digits", "params": {"n_train": 300}},
        "teacher": {"name": "mlp", "params": {"width": 32}, "optim": {"epochs": 1, "batch_size": 64}},
        "student": {"name": "mlp", "params": {"width": 16}}, "method": {"name": "kd"},
        "optim": {"epochs": 1, "batch_size": 64}}


@pytest.fixture
def finished(store):
    from kdlab.runs.experiment import run_experiment

    rid = store.create_run(SPEC, status="completed")
    run_experiment(SPEC, run_dir=store.run_dir(rid))
    return rid


def test_page_computes_in_background_and_saves_artifacts(store, finished):
    page = RepresentationsPage(store)
    assert page.run_id == finished and "Compute" in page.status.object
    page.max_samples = 120
    task = page.compute()
    rep = task.result(timeout=120)
    page.tick()
    assert not page.button.disabled and "done" in page.status.object
    teacher, student, splits = run_models(store.run_dir(finished))
    want = cka_matrix(teacher, student, splits.val, default_layers(teacher), default_layers(student),
                      batch_size=250, max_samples=120)
    assert np.allclose(np.asarray(page.heatmap.object.data[0].z, dtype=float), want.values, atol=1e-12)
    assert rep.agreement.top1 == pytest.approx(float((teacher(splits.val.x[:120]).argmax(1) ==
                                                      student(splits.val.x[:120]).argmax(1)).float().mean()))
    art = store.run_dir(finished) / "artifacts"
    saved = json.loads((art / "cka.json").read_text())
    assert saved["teacher_layers"] == ["blocks.0", "blocks.1", "head"] and saved["n_samples"] == 120
    assert {"agreement.json", "embedding.npz"} <= {p.name for p in art.iterdir()}
    assert not page.warning.visible  # 120 samples, at most 32 features per layer: no warning
    again = RepresentationsPage(store)  # a new session shows the saved results
    assert "saved" in again.status.object and again.heatmap.object is not None


def test_notebook_widget_on_two_models():
    from kdlab.data import load
    from kdlab.models import create

    data = load("digits", split="val")
    torch.manual_seed(0)
    t, s = create("convnet", 10, data.in_shape, width=8, depth=2), create("mlp", 10, data.in_shape, width=16)
    w = RepresentationsWidget(t, s, data, max_samples=100, batch_size=50)
    rep = w.wait(timeout=120)
    assert list(rep.cka.index) == ["features.0", "features.1", "classifier"]
    assert w.progress.value == 1.0 and not w.button.disabled
    assert rep.warning is not None and "debiased" in rep.warning  # 100 samples, 8*16*16 conv features
    assert set(rep.figures()) == {"cka", "agreement", "embeddings"}
