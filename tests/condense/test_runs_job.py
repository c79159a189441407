"""Condensation through the run store: the spec's task field, a foreground run's files, a background job."""
from __future__ import annotations

import json

import pytest

from kdlab.condense import SyntheticSet
from kdlab.errors import ConfigError
from kdlab.jobs.condense import EVAL_FILE, GRID_FILE, SNAPSHOT_DIR, SYNTHETIC_FILE, run_condensation
from kdlab.report.runs import load_run
from kdlab.runs import launch, open_store
from kdlab.runs.spec import load_spec

NET = {"width": 16, "depth": 2}


def condense_spec(iterations: int = 4, **params) -> dict:
    return {"name": "dm-digits", "task": "condense", "seed": 1, "device": "cpu",
            "data": {"name": "digits", "params": {"n_train": 300}},
            "condense": {"params": {"method": "dm", "ipc": 1, "iterations": iterations, "snapshot_every": 2,
                                    "model_params": NET, "batch_real": 16, **params},
                         "evaluation": {"epochs": 5, "n_nets": 2, "model_params": {"convnet": NET}}}}


def test_task_field_defaults_to_distillation_and_validates_condense_params():
    assert load_spec({}).task == "distill" and "task" not in load_spec({}).to_dict()
    spec = load_spec(condense_spec())
    assert spec.task == "condense" and spec.teacher is None
    assert load_spec(spec.to_dict()).to_dict() == spec.to_dict()  # serialisable round trip
    with pytest.raises(ConfigError, match="condense.params.condense.method: unknown condensation method .nope.*Valid"):
        load_spec(condense_spec(method="nope"))
    with pytest.raises(ConfigError, match="only used with task: condense"):
        load_spec({"condense": {}})


def test_foreground_run_writes_set_snapshots_grid_and_results(tmp_path):
    result = run_condensation(condense_spec(), tmp_path)
    syn = SyntheticSet.load(tmp_path / "artifacts" / SYNTHETIC_FILE)
    assert syn.x.shape == (10, 1, 8, 8) and syn.meta["method"] == "dm"
    snaps = sorted(p.name for p in (tmp_path / SNAPSHOT_DIR).iterdir())
    assert snaps == ["it000000.npz", "it000002.npz", "it000004.npz"]
    assert (tmp_path / "artifacts" / GRID_FILE).stat().st_size > 0
    rows = json.loads((tmp_path / "artifacts" / EVAL_FILE).read_text())["rows"]
    assert len(rows) == 2 and result.summary["test/acc"] == pytest.approx(sum(r["acc"] for r in rows) / 2)
    run = load_run(tmp_path)  # the report layer reads it like any run
    assert run.student["test/acc"] == pytest.approx(result.summary["test/acc"])


@pytest.mark.slow
def test_background_job_records_progress_and_artifacts(tmp_path):
    store = open_store(tmp_path / "store")
    handle = launch(condense_spec(iterations=6), store=store)
    assert handle.wait(timeout=240) == "completed", handle.output()
    m = handle.metrics()
    losses = m[m.key == "condense/loss"]
    assert sorted(losses.step.tolist()) == list(range(1, 7))
    assert store.get_run(handle.id).summary["test/acc"] > 0
    assert len(list((handle.run_dir / SNAPSHOT_DIR).glob("it*.npz"))) == 4  # 0, 2, 4, 6
    assert (handle.run_dir / "artifacts" / SYNTHETIC_FILE).is_file()
