"""Teacher-student agreement: formulas on hand-made logits, ECE equal to the viz reliability bins."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.analysis.agreement import agreement, ece, log_softmax, model_agreement
from kdlab.errors import ShapeError


def test_hand_computed_agreement_kl_and_per_class():
    t = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    s = np.array([[1.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 1, 1, 1])
    a = agreement(t, s, y, ["a", "b"])
    assert a.top1 == 0.75 and list(a.agree) == [True, False, True, True]
    assert a.teacher_acc == 0.75 and a.student_acc == 0.5
    pt, ps = np.exp(log_softmax(t)), np.exp(log_softmax(s))
    assert a.kl == pytest.approx(np.mean(np.sum(pt * np.log(pt / ps), 1)), rel=1e-12)
    row = a.per_class.set_index("class").loc["b"]
    assert row["n"] == 3 and row["teacher_acc"] == pytest.approx(2 / 3) and row["student_acc"] == pytest.approx(1 / 3)
    assert a.per_class.set_index("class").loc["a", "gap"] == 0.0


def test_identical_models_agree_fully_and_kl_is_zero():
    z = np.random.default_rng(0).standard_normal((200, 5))
    y = np.random.default_rng(1).integers(0, 5, 200)
    a = agreement(z, z.copy(), y, temperature=4.0)
    assert a.top1 == 1.0 and a.kl == pytest.approx(0.0, abs=1e-12)
    assert a.teacher_ece == a.student_ece
    b = agreement(z, -z, y)
    assert b.kl > 0 and b.top1 < 0.2


def test_ece_matches_the_reliability_diagram_bins():
    from kdlab.viz.calibration import expected_calibration_error

    rng = np.random.default_rng(3)
    z = rng.standard_normal((500, 10)) * 3
    y = rng.integers(0, 10, 500)
    p = np.exp(log_softmax(z))
    for bins in (5, 15):
        assert ece(p, y, bins) == pytest.approx(expected_calibration_error(p, y, bins), abs=1e-12)
    # a perfectly calibrated one-hot predictor that is always right has ECE 0
    assert ece(np.eye(4)[[0, 1, 2, 3]], np.arange(4)) == 0.0


def test_shape_errors_and_model_agreement():
    with pytest.raises(ShapeError):
        agreement(np.zeros((3, 2)), np.zeros((3, 3)), [0, 1, 0])
    with pytest.raises(ShapeError, match="labels"):
        agreement(np.zeros((3, 2)), np.zeros((3, 2)), [0, 1, 5])
    from kdlab.data import load
    from kdlab.models import create

    data = load("digits", split="val")
    torch.manual_seed(0)
    m = create("mlp", 10, data.in_shape, width=16)
    a = model_agreement(m, m, data)
    assert a.top1 == 1.0 and len(a.per_class) == 10 and a.per_class["n"].sum() == len(data)
