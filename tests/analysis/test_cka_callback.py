"""CKARecorder: teacher-student CKA recorded by the trainer before training and after each epoch."""
from __future__ import annotations

import json

import pytest
import torch

from kdlab.analysis.cka import cka_matrix
from kdlab.analysis.cka_callback import CKARecorder
from kdlab.data import load
from kdlab.distill import create_distiller
from kdlab.distill.trainer import TrainConfig, Trainer
from kdlab.errors import ConfigError
from kdlab.models import create


def test_recorder_tracks_cka_over_epochs(tmp_path):
    train, val = load("digits", split="train", n_train=256), load("digits", split="val")
    torch.manual_seed(0)
    teacher = create("mlp", 10, train.in_shape, width=32)
    student = create("mlp", 10, train.in_shape, width=16)
    rec = CKARecorder(val, every=1, max_samples=160, batch_size=80, path=tmp_path / "artifacts" / "cka_epochs.json")
    d = create_distiller("kd", teacher, student, train.in_shape)
    Trainer(d, TrainConfig(epochs=2, batch_size=64, device="cpu", cache_teacher=False), [rec]).fit(train, val)
    df = rec.frame()
    assert sorted(df["epoch"].unique()) == [0, 1, 2]
    assert set(df["teacher_layer"]) == {"blocks.0", "blocks.1"} and len(df) == 3 * 4
    last = df[df["epoch"] == 2].set_index(["teacher_layer", "student_layer"])["cka"]
    now = cka_matrix(teacher, student, val, ["blocks.0", "blocks.1"], ["blocks.0", "blocks.1"], batch_size=80,
                     max_samples=160)
    assert last[("blocks.1", "blocks.1")] == pytest.approx(now.loc["blocks.1", "blocks.1"], abs=1e-12)
    first = df[df["epoch"] == 0].set_index(["teacher_layer", "student_layer"])["cka"]
    assert (last - first).abs().max() > 1e-4  # training moved the student's representations
    saved = json.loads((tmp_path / "artifacts" / "cka_epochs.json").read_text())
    assert saved["n_samples"] == 160 and len(saved["rows"]) == len(df)
    with pytest.raises(ConfigError):
        CKARecorder(val, every=0)
