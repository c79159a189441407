"""The Diffusion page and widget headless: the form is the ``diffusion`` job's declared parameters plus the method
and its JSON parameters (bad JSON said on the page, nothing launched); a finished run is picked and its views drawn
from what it saved (read through the job's reader), the metric dropdown redraws the quality curves, run strings are
escaped; a running run's loss terms are drawn live from the store; the notebook widget draws the same views."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from diffusion_tiny import TINY, finished_tiny_run

from kdlab.jobs.diffusion import (
    NEIGH_FILE,
    QUALITY_FILE,
    SAMPLES_FILE,
    SNAP_FILE,
    SUMMARY_FILE,
    TRAJ_FILE,
    load_diffusion_artifacts,
)
from kdlab.runs.background import RunHandle
from kdlab.ui.diffusion import DiffusionPage, DiffusionWidget, figures, summary_line

EVIL = "<img src=x onerror=alert(1)>"
def finished_run(store, image: bool = False, method: str = "progressive") -> str:
    """A completed ``diffusion`` run of ``store`` whose artifacts are written by hand in the job's format."""
    run_id = store.create_run({"kind": "diffusion", "params": {"data": "digits" if image else "eight_gaussians",
                                                               "method": method}}, status="completed")
    art = store.run_dir(run_id) / "artifacts"
    art.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    metrics = ("fd", "accuracy") if image else ("swd", "mmd")
    rows = [{"who": w, "sampler": "ddim", "steps": k, "nfe": k, "s_per_sample": k / 1e4,
             **{m: (1.0 if w == "teacher" else 0.5) / k + i for i, m in enumerate(metrics)}}
            for w, ks in (("teacher", (1, 4, 20)), ("student", (1, 2, 4))) for k in ks]
    pd.DataFrame(rows).to_csv(art / QUALITY_FILE, index=False)
    shape, n = ((1, 6, 6) if image else (2,)), 16
    np.savez(art / SAMPLES_FILE, teacher_20=rng.uniform(-1, 1, (n, *shape)), student_1=rng.uniform(-1, 1, (n, *shape)),
             labels=np.arange(n) % 4, reference=rng.uniform(-1, 1, (30, *shape)))
    np.savez(art / TRAJ_FILE, teacher=rng.standard_normal((21, 8, *shape)), student=rng.standard_normal((2, 8, *shape)),
             teacher_t=np.r_[np.linspace(999, 0, 20).round(), -1], student_t=np.array([999.0, -1.0]))
    np.savez(art / SNAP_FILE, step=np.array([0, 25, 50]), samples=rng.uniform(-1, 1, (3, 8, *shape)),
             metric=np.array([1.0, 0.5, 0.25]))
    if image:
        np.savez(art / NEIGH_FILE, samples=rng.uniform(-1, 1, (2, *shape)),
                 neighbours=rng.uniform(-1, 1, (2, 3, *shape)), distances=rng.uniform(0, 1, (2, 3)))
    (art / SUMMARY_FILE).write_text(json.dumps({
        "data": "digits" if image else "eight_gaussians", "is_image": image, "method": method, "method_params": {},
        "cite": "Salimans & Ho 2022", "simplification": "fewer rounds", "teacher": {"arch": "mlp"},
        "samples_per_second": {"student_1": 2000.0, "teacher_20": 100.0}}))
    store.log_metrics(run_id, 10, {"loss/total": 0.5, "loss/kd": 0.4})
    return run_id


def test_the_form_is_the_jobs_parameters_and_bad_json_launches_nothing(store):
    page = DiffusionPage(store)
    assert page.run_id is None and "no finished" in page.info.object and not any(p.visible for p in page.panes.values())
    form = set(page.job.form.param) - {"name"}
    assert {"data", "steps", "guidance", "seed", "teacher_eval_steps"} <= form and "method" not in form
    page.method_params.value = "{rounds: 1"
    assert page.launch(steps=5) is None and "not JSON" in page.job.status.object and not store.jobs("diffusion")
    assert page.job.form.steps == 5


def test_a_finished_run_is_drawn_and_the_metric_dropdown_redraws(store):
    toy, img = finished_run(store), finished_run(store, image=True, method=EVIL)
    page = DiffusionPage(store)
    page.picker.value = toy
    shown = {k for k, p in page.panes.items() if p.visible}
    assert shown == {"card", "quality", "table", "grid", "trajectories", "snapshots", "curves", "speed"}
    assert list(page.metric.options) == ["swd", "mmd"] and page.metric.value == "swd"
    quality = page.panes["quality"].object
    assert np.allclose(quality.data[1].y, [0.5, 0.25, 0.125])  # the student's swd at 1, 2, 4 steps
    assert len(page.panes["trajectories"].object.frames) == 21 and len(page.panes["snapshots"].object.frames) == 3
    page.metric.value = "mmd"
    assert np.allclose(page.panes["quality"].object.data[1].y, [1.5, 1.25, 1.125])
    assert "student 1 step swd 0.5" in page.info.object and "20× faster" in page.info.object
    order = [next(k for k, p in page.panes.items() if p is v) for v in page.views.objects]
    assert order.index("card") < order.index("quality") < order.index("grid") < order.index("speed")

    page.picker.value = img
    assert page.panes["neighbours"].visible and list(page.metric.options) == ["fd", "accuracy"]
    assert page.metric.value == "fd" and "&lt;img" in page.info.object and "<img" not in page.info.object
    card = page.panes["card"].object.data[0].cells.values[1][0]
    assert "&lt;img src=x" in card
    assert page.panes["grid"].object.data[0].type == "image"
    order = [next(k for k, p in page.panes.items() if p is v) for v in page.views.objects]
    assert order.index("neighbours") < order.index("curves")  # first drawn now, still in its place


def test_live_loss_terms_of_a_running_run(store):
    run_id = store.create_run({"kind": "diffusion", "params": {"method": "progressive"}}, status="running")
    page = DiffusionPage(store)
    page.job.task = RunHandle(store, run_id)
    page.tick()
    assert not page.live.visible  # nothing logged yet
    store.log_metrics(run_id, 1, {"loss/total": 1.0, "loss/kd": 0.8})
    store.log_metrics(run_id, 2, {"loss/total": 0.7, "loss/kd": 0.5})
    page._tick_live()
    assert page.live.visible and [t.name for t in page.live.object.data] == ["loss/total", "loss/kd"]
    assert list(page.live.object.data[0].y) == [1.0, 0.7]


def test_the_notebook_widget_draws_the_same_views(store):
    run_id = finished_run(store, image=True)
    w = DiffusionWidget(store=store)
    w.follow(run_id)
    art = w.wait(timeout=10)
    assert w.label.value.startswith("done: method progressive on digits")
    want = figures(load_diffusion_artifacts(store.run_dir(run_id)), store.metrics(run_id))
    assert list(w.views()) == list(want) and len(w.out.outputs) == len(want) == 9
    assert w.views(metric="accuracy")["quality"].layout.yaxis.title.text.startswith("accuracy")
    assert summary_line(art) in w.label.value


@pytest.mark.timeout(240)
def test_a_real_tiny_run_is_followed_and_drawn(tmp_path_factory, monkeypatch):
    from kdlab.runs.store import open_store
    from kdlab.ui.diffusion import find_run

    home, run_id = finished_tiny_run(tmp_path_factory, monkeypatch)
    store = open_store(home)
    page = DiffusionPage(store)  # a new session: the run is there, followed and picked, nothing launched
    assert page.run_id == run_id and page.job.task.id == run_id and len(store.jobs("diffusion")) >= 1
    assert page.method.value == "progressive" and page.job.form.teacher_width == 64 and page.job.form.steps == 6
    art = load_diffusion_artifacts(store.run_dir(run_id))
    shown = {k for k, p in page.panes.items() if p.visible}
    assert shown == {"card", "quality", "table", "grid", "trajectories", "snapshots", "curves", "speed"}
    assert len(page.panes["trajectories"].object.frames) == len(art.trajectories["teacher"]) == 9
    assert len(page.panes["snapshots"].object.frames) == len(art.snapshots["step"]) >= 2
    assert page.panes["card"].object.data[0].cells.values[1][1].startswith("Salimans")  # the method's paper
    student = art.quality[art.quality["who"] == "student"].sort_values("nfe")
    assert np.allclose(page.panes["quality"].object.data[1].y, student["swd"])
    curves = page.panes["curves"].object
    assert {t.name for t in curves.data} >= {"eval/swd"} and any(t.name.startswith("loss/") for t in curves.data)
    assert find_run(store, **TINY).id == run_id and find_run(store, **{**TINY, "steps": 7}) is None
