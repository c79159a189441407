"""The Source selection component headless: Rank sources submits a ``transfer_rank`` job (a worker process) whose
scores equal the plain ``rank_sources`` call on the same zoo; the weights figure follows metric and temperature;
a new session shows the ranking and launches DistillNearest/DistillWeighted from *that* ranking's zoo and target;
launching needs a ranking; failures (at launch or in the worker) are reported escaped."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdlab.runs.background import RunHandle
from kdlab.transfer import BUILTIN_SOURCES, SourceZoo, make_target, rank_sources, source_weights
from kdlab.ui.source_selection import SourceSelection

SOURCES = ["mnist", "mnist_invert"]
ZOO = {"zoo_width": 4, "zoo_depth": 2, "zoo_epochs": 1, "zoo_n_train": 200}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> SourceZoo:
    """A tiny zoo of two sources, trained once here; the jobs name it by ``zoo_root`` and the same settings."""
    return SourceZoo(root=tmp_path_factory.mktemp("zoo"), arch_params={"width": 4, "depth": 2, "norm": "batchnorm"},
                     epochs=1, n_train=200, sources=[d for d in BUILTIN_SOURCES if d.name in SOURCES]).build()


def zoo_params(zoo: SourceZoo) -> dict:
    return {"zoo_root": str(zoo.root), "sources": SOURCES, **ZOO}


@pytest.mark.timeout(300)
def test_ranking_job_matches_the_plain_call_and_a_new_session_launches_from_it(zoo, store):
    comp = SourceSelection(store=store, labels_per_class=3, metric="logme", temperature=0.5, **zoo_params(zoo))
    assert comp.launch() == [] and comp.status.object == "Rank the sources first."
    task = comp.rank()
    assert store.get_run(task.id).spec["params"] == {
        "target": "digits", "size": 28, "labels_per_class": 3, "seed": 0, "metric": "logme", "temperature": 0.5,
        **zoo_params(zoo)}
    assert RunHandle(store, task.id).wait(timeout=240) == "completed", task.record.error
    comp.tick()
    assert comp.status.object == f"Ranked 2 sources. (job {task.id})"
    scores = comp.result["scores"]
    want = rank_sources(zoo, make_target("digits", 3, 0, size=28).labelled)
    pd.testing.assert_frame_equal(scores, want, rtol=1e-9, check_names=False)
    assert {k: (p.visible, p.css_classes) for k, p in comp.job.panes.items()} == {
        "scores": (True, ["kdlab-ss-scores"]), "weights": (True, ["kdlab-ss-weights"])}
    for metric, temperature in (("logme", 0.5), ("linear_probe", 0.5), ("logme", 100.0)):
        comp.job.form.metric, comp.job.form.temperature = metric, temperature  # redrawn, no new job
        bars = comp.job.panes["weights"].object.data[0]
        w = source_weights(scores, temperature, metric).sort_values(ascending=False)
        assert list(bars.x) == list(w.index) and np.allclose(bars.y, w.to_numpy())
    assert abs(bars.y[0] - 0.5) < 0.01  # a high temperature spreads the weight evenly
    assert [r.id for r in store.jobs("transfer_rank")] == [task.id]

    again = SourceSelection(store=store)  # a new session: it shows the ranking, its form the ranking's parameters
    assert again.job.task.id == task.id and again.status.object == f"Ranked 2 sources. (job {task.id})"
    pd.testing.assert_frame_equal(again.result["scores"], scores)
    saved = store.get_run(task.id).spec["params"]
    assert again.job.params() == saved
    # the form changed but not ranked again: runs are launched from the ranking shown, weighted as the form says
    again.job.form.labels_per_class, again.job.form.zoo_root, again.job.form.metric = 10, None, "linear_probe"
    assert again.ranked_params() == {**saved, "metric": "linear_probe"}
    nb = again.widget()  # the notebook face picks the same job up
    assert nb.follow().id == task.id and nb.update() and nb.label.value == "Ranked 2 sources."

    again.epochs = 1
    handles = again.launch()  # from the ranking's zoo and target, not the form's
    specs = {h.record.spec["name"]: h.record.spec for h in handles}
    assert set(specs) == {"distill-nearest-digits", "distill-weighted-digits"}
    best = scores["linear_probe"].idxmax()
    assert specs["distill-nearest-digits"]["teacher"]["name"] == f"zoo:{best}"
    assert specs["distill-weighted-digits"]["teacher"]["name"] == "zoo:" + "+".join(scores.index)
    for spec in specs.values():
        assert spec["teacher"]["params"]["root"] == str(zoo.root)
        assert spec["data"]["params"] == {"size": 28, "n_train": 30} and spec["optim"]["epochs"] == 1
    assert again.status.object == "Launched: " + ", ".join(f"`{h.id}`" for h in handles)
    for h in handles:
        h.cancel()


@pytest.mark.timeout(240)
def test_failures_are_reported_escaped_and_hide_the_previous_ranking(zoo, store):
    comp = SourceSelection(store=store, target="no<b>such", **zoo_params(zoo))
    assert comp.rank() is None and store.records() == []  # refused before any run exists
    assert comp.status.object.startswith("cannot start: params.target: unknown dataset")
    assert "&#x27;no&lt;b&gt;such&#x27;" in comp.status.object and "<b>" not in comp.status.object

    comp.job.form.target, comp.job.form.labels_per_class = "digits", 3
    done = comp.rank()
    assert RunHandle(store, done.id).wait(timeout=180) == "completed", done.record.error
    comp.tick()
    assert comp.result is not None and all(p.visible for p in comp.job.panes.values())

    comp.job.form.labels_per_class = 1000  # fails in the worker
    task = comp.rank()
    assert comp.result is None and not any(p.visible for p in comp.job.panes.values())  # not the old ranking
    assert comp.launch() == []  # nothing ranked by this job yet: no runs from the previous ranking
    assert RunHandle(store, task.id).wait(timeout=180) == "failed"
    comp.tick()
    assert comp.status.object.startswith("failed: failed: ConfigError: labels_per_class: 1000 x 10 classes")
    assert "&#x27;digits&#x27;" in comp.status.object  # the quotes of the message, escaped
    assert comp.result is None and not any(p.visible for p in comp.job.panes.values())
    assert not comp.job.button.disabled
    assert comp.launch() == [] and comp.status.object == "Rank the sources first."
    assert len(store.records()) == 2  # the two ranking jobs, no training run
