"""The Distilled images component without a browser: the slider scrubs a condensation run's snapshots, the nearest
real neighbours of the shown set are a ``neighbours`` job (a worker process) with the plain call's numbers, a new
page shows that job's result, the notebook widget runs the same job, and Launch starts a condensation run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.condense import nearest_real
from kdlab.jobs.condense import list_snapshots, load_snapshot, run_condensation
from kdlab.runs.background import RunHandle
from kdlab.runs.experiment import load_splits
from kdlab.runs.spec import load_spec
from kdlab.runs.store import ACTIVE
from kdlab.ui.distilled_images import DistilledImagesPage, DistilledImagesWidget, compare_methods

NET = {"width": 16, "depth": 2}
SPEC = {"name": "dm-ui", "task": "condense", "seed": 0, "device": "cpu",
        "data": {"name": "digits", "params": {"n_train": 200}},
        "condense": {"params": {"method": "dm", "ipc": 1, "iterations": 4, "snapshot_every": 2, "batch_real": 16,
                                "model_params": NET, "fyi": True},
                     "evaluation": {"epochs": 2, "n_nets": 1, "model_params": {"convnet": NET}}}}


def condensed(store, spec=SPEC):
    rid = store.create_run(spec, status="completed")
    return rid, run_condensation(spec, store.run_dir(rid))


@pytest.mark.timeout(240)
def test_page_scrubs_snapshots_and_finds_neighbours_in_a_job(store):
    rid, result = condensed(store)
    page = DistilledImagesPage(store)
    assert page.run_id == rid and page._snapshots == [0, 2, 4] == list_snapshots(store.run_dir(rid))
    assert page.status.object == "10 images, 1 per class; 3 snapshots" and page.status.css_classes == [
        "kdlab-distilled-view"]
    assert page.job.status.object == "press Nearest neighbours to search the real images" and page.job.panes == {}
    page.slider.value = 0
    first = page.current()
    assert page.iteration == 0 and not torch.equal(first.x, result.synthetic.x)  # DM moved the images
    assert page.grid.object.layout.title.text == "synthetic images per class (iteration 0)"
    page.flips = True
    assert tuple(page.grid.object.layout.xaxis.ticktext) == ("image", "flip")  # image + flip columns

    task = page.compute()
    assert store.get_run(task.id).spec["params"] == {"run": rid, "iteration": 0, "space": "pixel", "k": 5}
    assert RunHandle(store, task.id).wait(timeout=180) == "completed", task.record.error
    page.tick()
    assert page.job.status.object == f"done (job {task.id})" and not page.job.button.disabled
    assert {k: (p.visible, p.css_classes) for k, p in page.job.panes.items()} == {
        "neighbours": (True, ["kdlab-distilled-neighbours"]), "means": (True, ["kdlab-distilled-means"])}
    n = page.job.result
    assert n.iteration == 0 and n.space == "pixel" and n.rows == [str(c) for c in range(10)]
    # the plain call on the snapshot at iteration 0 and the run's real training images
    syn = load_snapshot(store.run_dir(rid), 0)
    real = load_splits(load_spec(SPEC)).train
    firsts = [int((syn.y == c).nonzero()[0, 0]) for c in range(10)]
    idx, dist = nearest_real(syn.x[firsts], real.x, k=5)
    np.testing.assert_allclose(n.distances, dist.numpy(), rtol=1e-12)
    np.testing.assert_array_equal(n.neighbours, real.x[idx].numpy())
    np.testing.assert_array_equal(n.set_x, syn.x.numpy())
    np.testing.assert_allclose(n.means[3], real.x[real.y == 3].mean(0).numpy(), rtol=1e-6)

    again = DistilledImagesPage(store)  # a new session: the job's result, no new search
    assert again.job.task.id == task.id and again.job.result.iteration == 0
    assert all(p.visible for p in again.job.panes.values())
    assert [r.id for r in store.jobs("neighbours")] == [task.id]


@pytest.mark.timeout(240)
def test_widget_finds_an_exact_copy_in_feature_space_and_launch_starts_a_run(store):
    spec = {**SPEC, "name": "random-ui",
            "condense": {"params": {"method": "random", "ipc": 1, "iterations": 0, "model_params": NET},
                         "evaluation": {"epochs": 1, "n_nets": 1, "model_params": {"convnet": NET}}}}
    rid, _ = condensed(store, spec)
    widget = DistilledImagesWidget(rid, store=store, space="feature", k=2)
    n = widget.wait(timeout=180)
    assert widget.task.record.spec["params"] == {"run": rid, "iteration": 0, "space": "feature", "k": 2}
    assert n.space == "feature" and n.distances.shape == (10, 2)
    assert (n.distances[:, 0] < 1e-3).all()  # each selected real image is its own nearest neighbour
    np.testing.assert_allclose(n.neighbours[:, 0], n.synthetic, atol=1e-6)  # the set holds real images

    page = DistilledImagesPage(store, run_id=rid)
    page.method, page.ipc, page.iterations, page.cross_architecture = "random", 1, 0, True
    launched = page.launch()
    rec = store.get_run(launched)
    assert page.run_id == launched and launched in page.picker.options.values()
    assert rec.spec["task"] == "condense" and rec.spec["condense"]["params"]["method"] == "random"
    assert rec.spec["condense"]["evaluation"]["models"] == ["convnet", "mlp", "resnet8", "vit_tiny"]
    assert rec.status in ACTIVE
    assert RunHandle(store, launched).cancel() == "cancelled"


def test_page_compares_runs_per_class_side_by_side(store):
    def run(method, ipc, seed):
        spec = {**SPEC, "name": f"{method}-{seed}", "seed": seed,
                "condense": {"params": {"method": method, "ipc": ipc, "iterations": 0, "model_params": NET},
                             "evaluation": {"epochs": 1, "n_nets": 1, "model_params": {"convnet": NET}}}}
        return condensed(store, spec)

    (a, _), (b, rb) = run("random", 2, 0), run("random", 1, 1)
    page = DistilledImagesPage(store, run_id=a)
    assert set(page.compare_picker.options.values()) == {a, b} and not page.comparison.visible
    page.compare = [b]
    fig = page.comparison.object
    assert page.comparison.visible and list(fig.layout.xaxis.ticktext) == ["random IPC 2", "random IPC 1"]
    z = np.asarray(fig.data[0].z)
    first_b = rb.synthetic.x[rb.synthetic.y == 0][0].clamp(0, 1)  # class 0 of run b: after 2 images and a gap
    expected = (first_b.permute(1, 2, 0).repeat(1, 1, 3).numpy() * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(z[4:36, 4 + 3 * 36:4 + 3 * 36 + 32], expected.repeat(4, 0).repeat(4, 1))  # 8x8 at 4x
    assert compare_methods(store, [a, b]).to_dict() == fig.to_dict()  # the plain call draws the same figure


@pytest.mark.timeout(240)
def test_page_runs_mirage_in_a_job_and_draws_its_trees_and_accuracy(store):
    from kdlab.jobs.graph_condense import GraphCondenseJob

    page = DistilledImagesPage(store)
    assert page.graphs.status.object == "graph classification: press Distil graphs to run Mirage"
    page.graphs.form.param.update(dataset_params={"graphs": 48}, models=["gin"], epochs=2, threshold=0.3, max_sets=6)
    task = page.graphs.compute()
    assert store.get_run(task.id).spec["params"]["dataset_params"]["graphs"] == 48  # the rest: the defaults
    assert RunHandle(store, task.id).wait(timeout=180) == "completed", task.record.error
    page.tick()
    assert {k: p.visible for k, p in page.graphs.panes.items()} == {"trees": True, "accuracy": True}
    art = GraphCondenseJob().read(store.run_dir(task.id))
    trees = page.graphs.panes["trees"].object
    drawn = {(t.meta["class"], t.meta["tree"]) for t in trees.data if t.meta}
    assert drawn and {c for c, _ in drawn} <= set(art.mirage_set.classes)
    legend = {t.name for t in trees.data if t.mode == "markers"}
    assert legend and legend <= {"degree 0", "degree 1", "degree 2", "degree 3+"}  # motifs' feature names
    bars = {t.name: list(t.y) for t in page.graphs.panes["accuracy"].object.data}
    table = art.table.set_index("data")["test_acc"]
    assert bars == {"full training set": [pytest.approx(100 * table["full"])],
                    "Mirage set": [pytest.approx(100 * table["mirage"])]}
    assert f"{art.summary['tree_sets']:.0f} tree-sets" in page.graphs.status.object


def test_page_and_report_draw_a_trajectory_matching_run(store):
    from kdlab.report.condense import condense_section
    from kdlab.report.runs import run_from_store

    spec = {**SPEC, "name": "mtt-ui",
            "condense": {"params": {"method": "mtt", "ipc": 1, "iterations": 3, "model_params": NET, "dsa": False,
                                    "method_params": {"n_experts": 1, "expert_epochs_total": 2, "expert_epochs": 1,
                                                      "max_start_epoch": 1, "syn_steps": 2, "batch_syn": 0}},
                         "evaluation": {"epochs": 1, "n_nets": 1, "model_params": {"convnet": NET}}}}
    rid = store.create_run(spec, status="running")
    result = run_condensation(spec, store.run_dir(rid), store=store, run_id=rid)
    store.set_status(rid, "completed")
    page = DistilledImagesPage(store, run_id=rid)
    panes = {p.css_classes[0]: p.object for p in page.trajectories.objects}
    assert sorted(panes) == ["kdlab-distilled-trajectory-distance", "kdlab-distilled-trajectory-matching",
                             "kdlab-distilled-trajectory-paths"]
    extras = result.synthetic.extras
    paths = panes["kdlab-distilled-trajectory-paths"]
    np.testing.assert_allclose(paths.data[0].x, extras["expert_path_2d"][:, 0])
    np.testing.assert_allclose(paths.data[1].y, extras["student_path_2d"][:, 1])
    matching = panes["kdlab-distilled-trajectory-matching"]
    assert list(matching.data[0].x) == [1, 2, 3]
    np.testing.assert_allclose(matching.data[0].y, result.synthetic.meta["loss"], rtol=1e-6)  # the store's rows
    assert len(matching.data) == 2  # the learned synthetic learning rate on its own axis
    titles = [t for _, t, _ in condense_section(run_from_store(store, rid))]
    assert {"trajectory matching", "distance to the expert", "matching distance"} <= set(titles)
    other, _ = condensed(store, {**SPEC, "name": "random-ui", "condense": {
        "params": {"method": "random", "ipc": 1, "iterations": 0, "model_params": NET},
        "evaluation": {"epochs": 1, "n_nets": 1, "model_params": {"convnet": NET}}}})
    page.run_id = other
    assert page.trajectories.objects == []  # other methods have no trajectories
