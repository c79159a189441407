from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kdlab.errors import ConfigError
from kdlab.report import (
    build,
    load_predictions,
    load_run,
    load_runs,
    report_figures,
    run_from_store,
    save_predictions,
)

RESULT = {"spec": {"name": "r", "seed": 0, "method": {"name": "kd"}}, "teacher": {"test/acc": 0.9},
          "student": {"test/acc": 0.8}, "history": [{"epoch": 1, "val/acc": 0.5, "train/ce": 1.0}],
          "notes": [], "environment": {}}


def test_sources_and_names():
    runs = load_runs({"a": RESULT, "b": RESULT})
    assert [r.name for r in runs] == ["a", "b"]
    assert [r.name for r in load_runs([RESULT, RESULT, RESULT])] == ["r", "r (2)", "r (3)"]
    assert load_runs(RESULT)[0].method == "kd"
    with pytest.raises(ConfigError, match="does not exist"):
        load_run("/nonexistent/run")
    with pytest.raises(ConfigError):
        load_run(3.5)


def test_folder_with_results_and_predictions(tmp_path):
    with pytest.raises(ConfigError, match="no results.json"):
        load_run(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(RESULT))
    labels = np.array([0, 1, 1, 2])
    logits = np.eye(3)[[0, 1, 2, 2]] * 5.0
    save_predictions(tmp_path, labels, logits, teacher=np.eye(3)[labels], class_names=["x", "y", "z"])
    run = load_run(tmp_path)
    assert run.folder == tmp_path and run.predictions is not None
    assert np.array_equal(run.predictions.labels, labels) and run.predictions.class_names == ["x", "y", "z"]
    assert np.allclose(run.predictions.student, logits)
    assert load_run(tmp_path / "results.json").name == "r"
    assert len(report_figures(run)) == 4
    p = load_predictions(tmp_path / "predictions.npz")
    assert p.split == "test" and p.teacher.shape == (4, 3)


def test_a_store_run_resolves_to_the_same_report_data(tmp_path):
    from kdlab.runs.store import open_store

    store = open_store(tmp_path / "store")
    spec = {"name": "stored", "data": {"name": "mnist5k"}, "student": {"name": "mlp"}, "method": {"name": "kd"}}
    run_id = store.create_run(spec, name="live run", status="running")  # no worker: nothing is launched
    for e in (1, 2):
        store.log_metrics(run_id, step=10 * e, values={"val/acc": 0.4 * e, "train/ce": 1.0 / e, "train/kd": 0.1},
                          epoch=e, kind="epoch")
    store.log_metrics(run_id, step=5, values={"train/loss": 9.0}, epoch=0.5, kind="step")
    run = run_from_store(store, "live run")
    assert run.name == "live run" and run.status == "running" and run.spec["name"] == "stored"
    assert isinstance(run.history, pd.DataFrame)
    (curves,) = report_figures(run).all()
    terms = [t.name for t in curves.figure.data if t.meta["panel"] == "loss terms"]
    assert terms == ["train/ce", "train/kd"]
    assert list(next(t for t in curves.figure.data if t.name == "val/acc").y) == [0.4, 0.8]
    # once the run folder has results.json, those are used
    (store.run_dir(run_id) / "results.json").write_text(json.dumps(RESULT))
    run = run_from_store(store, run_id)
    assert run.student["test/acc"] == 0.8 and run.name == "live run"
    assert "live run" in build(run)
