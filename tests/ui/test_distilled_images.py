"""The Distilled images component without a browser: slider over snapshots, neighbours, launch."""
from __future__ import annotations

import torch

from kdlab.jobs.condense import list_snapshots, run_condensation
from kdlab.runs.store import open_store
from kdlab.ui.distilled_images import DistilledImagesPage, DistilledImagesWidget, neighbours

NET = {"width": 16, "depth": 2}
SPEC = {"name": "dm-ui", "task": "condense", "seed": 0, "device": "cpu",
        "data": {"name": "digits", "params": {"n_train": 200}},
        "condense": {"params": {"method": "dm", "ipc": 1, "iterations": 4, "snapshot_every": 2, "batch_real": 16,
                                "model_params": NET, "fyi": True},
                     "evaluation": {"epochs": 2, "n_nets": 1, "model_params": {"convnet": NET}}}}


def test_page_scrubs_snapshots_and_finds_neighbours(tmp_path):
    store = open_store(tmp_path / "home")
    rid = store.create_run(SPEC, status="completed")
    result = run_condensation(SPEC, store.run_dir(rid))
    page = DistilledImagesPage(store)
    assert page.run_id == rid and page._snapshots == [0, 2, 4] == list_snapshots(store.run_dir(rid))
    page.slider.value = 0
    first = page.current()
    assert page.iteration == 0 and not torch.equal(first.x, result.synthetic.x)  # DM moved the images
    page.flips = True
    assert len(page.grid.object.layout.xaxis.ticktext) == 2  # image + flip columns
    task = page.compute()
    n = task.result(timeout=120)
    page.tick()
    assert page.status.object == "done" and all(p.visible for p in page.extra)
    assert n.index.shape == (10, 5)


def test_neighbours_in_feature_space_find_an_exact_copy(tmp_path):
    from kdlab.condense import condense
    from kdlab.data import load

    train = load("digits", split="train", n_train=200)
    syn = condense(train, method="random", ipc=1, seed=0)
    n = neighbours(lambda *a: None, syn, train, space="feature", k=2)
    assert (n.distances[:, 0] < 1e-3).all()  # each selected real image is its own nearest neighbour
    widget = DistilledImagesWidget(syn, real=train)
    assert widget.wait(timeout=120).index.shape == (10, 5)
