"""The Representations component on a real finished run: Compute submits a ``cka`` job that a worker process runs;
the page draws what the job saved (the same numbers as the plain ``cka_matrix`` call), and a new page object on
the same store (a new browser session) shows that result without computing again. The notebook widget is the
same job's other face."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.analysis.cka import cka_matrix
from kdlab.jobs.cka import default_layers
from kdlab.runs.background import RunHandle
from kdlab.runs.experiment import load_models
from kdlab.ui.representations import RepresentationsPage, RepresentationsWidget

SPEC = {"name": "repr-kd", "seed": 0, "device": "cpu", "data": {"name": "digits", "params": {"n_train": 300}},
        "teacher": {"name": "mlp", "params": {"width": 32}, "optim": {"epochs": 1, "batch_size": 64}},
        "student": {"name": "mlp", "params": {"width": 16}}, "method": {"name": "kd"},
        "optim": {"epochs": 1, "batch_size": 64}}


@pytest.fixture
def finished(store):
    """A completed training run of the store (trained here in the foreground: quick)."""
    from kdlab.runs.experiment import run_experiment

    rid = store.create_run(SPEC, status="completed")
    run_experiment(SPEC, run_dir=store.run_dir(rid))
    return rid


def heat_z(page) -> np.ndarray:
    return np.asarray(page.job.panes["heatmap"].object.data[0].z, dtype=float)


@pytest.mark.timeout(240)
def test_page_computes_in_a_job_and_a_new_session_shows_the_result(store, finished):
    page = RepresentationsPage(store)
    assert page.run_id == finished and page.status.object == "press Compute to analyse this run"
    assert page.job.panes == {} and not page.button.disabled  # no figure before there is a result
    page.job.form.split, page.job.form.max_samples, page.job.form.batch_size = "test", 120, 50
    task = page.compute()
    assert task.kind == "cka" and page.button.disabled and page.status.object == "queued"
    assert store.get_run(task.id).spec["params"] == {"run": finished, "split": "test", "pool": "flatten",
                                                     "embedding": "pca", "max_samples": 120, "batch_size": 50}
    assert page.compute().id == task.id  # a second click while the job runs does not start another
    assert RunHandle(store, task.id).wait(timeout=180) == "completed", task.record.error
    page.tick()
    assert not page.button.disabled and page.status.object == f"done (job {task.id})"
    assert {k: (p.visible, p.css_classes) for k, p in page.job.panes.items()} == {
        "heatmap": (True, ["kdlab-repr-heatmap"]), "agreement": (True, ["kdlab-repr-agreement"]),
        "embeddings": (True, ["kdlab-repr-embeddings"])}

    m = load_models(store.run_dir(finished))
    data = m.splits.test
    want = cka_matrix(m.teacher, m.student, data, default_layers(m.teacher), default_layers(m.student),
                      batch_size=50, max_samples=120)
    assert list(want.index) == ["blocks.0", "blocks.1", "head"]
    np.testing.assert_allclose(heat_z(page), want.to_numpy(), atol=1e-10)
    rep = page.job.result
    assert rep.cka.attrs["n_samples"] == 120 and list(rep.cka.columns) == list(want.columns)
    with torch.no_grad():
        agree = (m.teacher(data.x[:120]).argmax(1) == m.student(data.x[:120]).argmax(1)).double().mean()
    assert rep.agreement.top1 == pytest.approx(float(agree))
    assert not page.warning.visible  # 120 samples, at most 32 features per layer: no warning

    before = [t.name for t in page.job.panes["embeddings"].object.data]
    page.color_by = "agreement"  # redrawn from the saved result, no new job
    assert set(before) == {str(c) for c in range(10)}
    assert {t.name for t in page.job.panes["embeddings"].object.data} == {"agree", "disagree"}

    again = RepresentationsPage(store)  # a new session: the finished job's result, nothing recomputed
    assert again.job.task.id == task.id and again.status.object == f"done (job {task.id})"
    np.testing.assert_allclose(heat_z(again), want.to_numpy(), atol=1e-10)
    assert not again.button.disabled and all(p.visible for p in again.job.panes.values())
    assert (again.job.form.split, again.job.form.max_samples, again.job.form.batch_size) == ("test", 120, 50)
    assert [r.id for r in store.jobs("cka")] == [task.id]


def test_page_without_a_finished_run_says_so(store):
    page = RepresentationsPage(store)
    assert page.run_id is None and page.button.disabled
    assert "no finished run with a teacher yet" in page.status.object and page.job.panes == {}


@pytest.mark.timeout(240)
def test_notebook_widget_submits_a_job_and_waits_for_it(store, finished):
    w = RepresentationsWidget(run=finished, store=store, max_samples=100, batch_size=50)
    rep = w.wait(timeout=180)
    job = store.jobs("cka", of=finished)[0]
    assert w.task.id == job.id and job.status == "completed" and job.spec["params"]["max_samples"] == 100
    m = load_models(store.run_dir(finished))
    want = cka_matrix(m.teacher, m.student, m.splits.val, default_layers(m.teacher), default_layers(m.student),
                      batch_size=50, max_samples=100)
    np.testing.assert_allclose(rep.cka.to_numpy(), want.to_numpy(), atol=1e-10)
    assert w.progress.value == 1.0 and not w.button.disabled and w.label.value == "done"
    assert set(rep.figures()) == {"cka", "agreement", "embeddings"}
    again = RepresentationsWidget(run=finished, store=store)  # a restarted kernel picks the job up
    assert again.follow().id == job.id and again.update()
    np.testing.assert_allclose(again.result.cka.to_numpy(), want.to_numpy(), atol=1e-10)
    assert len(store.jobs("cka")) == 1
