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


def test_teacher_training_names_itself_in_a_non_finite_loss(monkeypatch):
    """get_teacher trains the teacher with the student's Trainer: a NaN loss there must say "teacher training"
    and point at the teacher's settings, and not claim a checkpoint (the teacher has none)."""
    import torch

    from kdlab.data import ArrayDataset
    from kdlab.errors import NonFiniteLossError
    from kdlab.runs import experiment
    from kdlab.runs.spec import load_spec

    class NaNWhileTraining(torch.nn.Module):
        def __init__(self, classes: int, in_shape: tuple[int, ...]):
            super().__init__()
            self.fc = torch.nn.Linear(int(torch.Size(in_shape).numel()), classes)

        def forward(self, x):
            out = self.fc(x.flatten(1))
            return out * float("nan") if self.training else out

    monkeypatch.setattr(experiment, "create", lambda name, classes, in_shape, **_: NaNWhileTraining(classes, in_shape))
    data = ArrayDataset(torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(64) % 4,
                        "tiny4")
    spec = load_spec({**TINY, "device": "cpu",  # a teacher of its own: no other test's cached teacher is touched
                      "teacher": {"name": "mlp", "params": {"width": 7}, "optim": {"epochs": 1, "batch_size": 32}}})
    with pytest.raises(NonFiniteLossError, match=r"^teacher training: non-finite loss at epoch 1, step 0: "
                                                 r"non-finite terms ce=nan;.*teacher\.optim\.lr.*"
                                                 r"no checkpoint was written yet$"):
        experiment.get_teacher(spec, experiment.Splits(data, data, data), "cpu")
