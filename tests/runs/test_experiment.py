"""End to end on real data: teacher trained once and cached, student distilled, results written."""
from __future__ import annotations

import json

import pytest

from kdlab.errors import CheckpointError
from kdlab.runs.experiment import run_experiment

TINY = {
    "name": "tiny", "seed": 0, "data": {"name": "mnist5k", "params": {"n_train": 600}},
    "teacher": {"name": "convnet", "params": {"width": 16, "depth": 2, "norm": "batchnorm"},
                "optim": {"epochs": 2, "lr": 0.05, "batch_size": 64}},
    "student": {"name": "mlp", "params": {"width": 64}},
    "method": {"name": "kd"}, "optim": {"epochs": 4, "batch_size": 64, "lr": 0.05},
}


@pytest.mark.slow
def test_run_experiment_trains_caches_teacher_and_writes_results(tmp_path):
    first = run_experiment(TINY, run_dir=tmp_path / "a")
    assert first.teacher["source"] == "trained"
    assert first.teacher["test/acc"] > 0.8
    assert 0.6 < first.student["test/acc"] <= 1.0
    assert 0.0 <= first.student["test/agreement"] <= 1.0
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert saved["student"]["test/acc"] == first.student["test/acc"]
    assert saved["environment"]["torch"]
    assert (tmp_path / "a" / "checkpoints" / "last.pt").is_file()

    second = run_experiment(TINY, run_dir=tmp_path / "b")
    assert second.teacher["source"] == "cache"
    assert second.teacher["test/acc"] == first.teacher["test/acc"]
    assert second.student["test/acc"] == first.student["test/acc"]  # same seed, same numbers on CPU


@pytest.mark.slow
def test_teacher_checkpoint_and_resume(tmp_path):
    run_experiment(TINY, run_dir=tmp_path / "a")
    spec = {**TINY, "teacher": {**TINY["teacher"], "checkpoint": str(tmp_path / "a/checkpoints/last.pt")}}
    r = run_experiment({**spec, "method": {"name": "vanilla"}, "teacher": None}, run_dir=tmp_path / "v")
    assert "test/agreement" not in r.student
    with pytest.raises(CheckpointError, match="cannot resume"):
        run_experiment(TINY, run_dir=tmp_path / "fresh", resume=True)
