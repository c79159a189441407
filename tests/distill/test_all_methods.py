"""Every registered method trains through the real Trainer, for a CNN and an MLP student."""
from __future__ import annotations

import math

import pytest
import torch

from kdlab.distill import METHODS, create_distiller
from kdlab.distill.trainer import TrainConfig, Trainer
from kdlab.errors import ConfigError
from kdlab.models import create

SPATIAL_ONLY = {"at", "nst"}  # need conv feature maps in the student


@pytest.mark.parametrize("student", ["convnet", "mlp"])
@pytest.mark.parametrize("method", METHODS.names())
def test_method_trains_with_finite_per_term_telemetry(method, student, tiny_data, tiny_teacher):
    train, val = tiny_data
    torch.manual_seed(0)
    s = create(student, 4, (1, 12, 12), **({"width": 8, "depth": 2} if student == "convnet" else {"width": 32}))
    teacher = tiny_teacher if METHODS.get(method).uses_teacher or method == "dml" else None
    if method == "born_again":
        teacher = create(student, 4, (1, 12, 12), **({"width": 8, "depth": 2} if student == "convnet"
                                                    else {"width": 32}))
    if student == "mlp" and method in SPATIAL_ONLY:
        with pytest.raises(ConfigError, match="spatial"):
            create_distiller(method, teacher, s, (1, 12, 12))
        return
    d = create_distiller(method, teacher, s, (1, 12, 12))
    result = Trainer(d, TrainConfig(epochs=4, batch_size=32, lr=0.05, log_every=0)).fit(train, val)
    last = result.last
    terms = [k for k in last if k.startswith("train/") and k not in ("train/acc", "train/loss")]
    assert terms, "a method must report its loss terms"
    assert all(math.isfinite(last[k]) for k in terms)
    assert last["train/loss"] == pytest.approx(sum(last[k] for k in terms), rel=1e-4, abs=1e-6)
    assert last["val/acc"] > 0.25  # above chance (4 classes) after four short epochs
