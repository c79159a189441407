"""FitNets: hand-derived hint MSE (same rank and pooled), adapters from probed shapes, gradients, training."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kdlab.distill.adapters import ConvAdapter
from kdlab.distill.methods.fitnets import fitnets_loss
from kdlab.errors import ShapeError

from .helpers import IN, check_finite_gradients, check_sgd_reduces, make

RNG = np.random.default_rng(0)
FS = RNG.normal(size=(2, 3, 2, 2))
FT = RNG.normal(size=(2, 3, 2, 2))


def test_fitnets_loss_matches_hand_derived():
    total, count = 0.0, 0
    for idx in np.ndindex(*FS.shape):
        total += (FS[idx] - FT[idx]) ** 2
        count += 1
    assert float(fitnets_loss(torch.tensor(FS), torch.tensor(FT))) == pytest.approx(total / count, rel=1e-12)


def test_fitnets_loss_pools_a_conv_teacher_for_a_vector_student():
    vec = RNG.normal(size=(2, 3))
    expected = 0.0
    for i in range(2):
        for c in range(3):
            pooled = sum(FT[i, c, h, w] for h in range(2) for w in range(2)) / 4
            expected += (vec[i, c] - pooled) ** 2
    got = fitnets_loss(torch.tensor(vec), torch.tensor(FT))
    assert float(got) == pytest.approx(expected / 6, rel=1e-12)
    assert float(fitnets_loss(torch.tensor(FT), torch.tensor(FT))) == 0.0
    with pytest.raises(ShapeError, match="does not match"):
        fitnets_loss(torch.zeros(2, 4), torch.tensor(FT))


def test_fitnets_identical_student_gives_zero_hint():
    d = make("fitnets", conv_width=16)
    d.student.load_state_dict(d.teacher.state_dict())
    assert all(isinstance(a, nn.Identity) for a in d.adapters)
    x, y = torch.randn(4, *IN), torch.tensor([0, 1, 2, 3])
    _, terms = d.forward_train(x, y)
    assert terms["hint"].item() == pytest.approx(0.0, abs=1e-12)


def test_fitnets_single_hint_by_layer_choice():
    d = make("fitnets", teacher_layers=["features.1"], student_layers=["features.0"])
    assert len(d.adapters) == 1 and isinstance(d.adapters[0], ConvAdapter)
    _, terms = d.forward_train(torch.randn(3, *IN), torch.tensor([0, 1, 2]))
    assert torch.isfinite(terms["hint"]) and terms["hint"].item() > 0


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_fitnets_distiller_finite_gradients(student):
    d = make("fitnets", student)
    assert len(d.adapters) == len(d.student_layers) == len(d.teacher_layers) >= 1
    check_finite_gradients(d, {"ce", "hint"}, extra=[d.adapters])  # the frozen teacher gets no gradient


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_fitnets_sgd_steps_reduce_the_hint(student):
    check_sgd_reduces(make("fitnets", student, ce_weight=0.0, feat_weight=1.0), ["hint"], lr=0.1)
