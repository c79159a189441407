"""RKD: hand-derived distance and angle losses, scale / rotation / translation invariance, training."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from kdlab.distill.methods.rkd import rkd_angle_loss, rkd_distance_loss, rkd_loss

from .helpers import check_finite_gradients, check_sgd_reduces, make

RNG = np.random.default_rng(3)
ES = RNG.normal(size=(4, 3))
ET = RNG.normal(size=(4, 5))


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def np_distance_loss(s: np.ndarray, t: np.ndarray) -> float:
    n = len(s)

    def normalised(e):
        d = [[math.dist(e[i], e[j]) for j in range(n)] for i in range(n)]
        mu = sum(d[i][j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        return [[d[i][j] / mu for j in range(n)] for i in range(n)]

    ds, dt = normalised(s), normalised(t)
    return sum(huber(ds[i][j] - dt[i][j]) for i in range(n) for j in range(n)) / n**2


def np_angle(e: np.ndarray, i: int, j: int, k: int) -> float:
    """cos of the angle at e_i between e_j - e_i and e_k - e_i (0 when j or k is i)."""
    if j == i or k == i:
        return 0.0
    a, b = e[j] - e[i], e[k] - e[i]
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def np_angle_loss(s: np.ndarray, t: np.ndarray) -> float:
    n = len(s)
    return sum(huber(np_angle(s, i, j, k) - np_angle(t, i, j, k))
               for i, j, k in itertools.product(range(n), repeat=3)) / n**3


def test_rkd_losses_match_hand_derived():
    s, t = torch.tensor(ES), torch.tensor(ET)
    assert float(rkd_distance_loss(s, t)) == pytest.approx(np_distance_loss(ES, ET), rel=1e-10)
    assert float(rkd_angle_loss(s, t)) == pytest.approx(np_angle_loss(ES, ET), rel=1e-10)
    expected = 25 * np_distance_loss(ES, ET) + 50 * np_angle_loss(ES, ET)
    assert float(rkd_loss(s, t)) == pytest.approx(expected, rel=1e-10)
    # big relative differences use the linear branch of smooth-L1
    far = ES.copy()
    far[0] *= 30
    expected = np_distance_loss(far, ET)
    assert float(rkd_distance_loss(torch.tensor(far), t)) == pytest.approx(expected, rel=1e-10)


def test_rkd_invariant_to_scale_rotation_and_translation():
    s, t = torch.tensor(ES), torch.tensor(ET)
    base = float(rkd_loss(s, t))
    q, _ = torch.linalg.qr(torch.tensor(RNG.normal(size=(3, 3))))
    moved = 0.01 * s @ q + torch.tensor([5.0, -2.0, 1.0], dtype=torch.float64)
    assert float(rkd_loss(moved, t)) == pytest.approx(base, rel=1e-8)
    assert float(rkd_loss(s, 40.0 * t)) == pytest.approx(base, rel=1e-8)
    # the same configuration in a wider space (teacher width differs) relates identically -> 0
    embedded = torch.cat([1e3 * s @ q, torch.zeros(4, 2, dtype=torch.float64)], dim=1)
    assert float(rkd_loss(s, embedded)) == pytest.approx(0.0, abs=1e-10)
    assert float(rkd_distance_loss(s[:1], t[:1])) == 0.0


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_rkd_distiller_finite_gradients(student):
    d = make("rkd", student)
    assert len(d.student_layers) == len(d.teacher_layers) == 1
    check_finite_gradients(d, {"ce", "rkd_distance", "rkd_angle"})


def test_rkd_sgd_steps_reduce_the_relation_terms():
    d = make("rkd", "mlp", ce_weight=0.0, distance_weight=1.0, angle_weight=1.0)
    check_sgd_reduces(d, ["rkd_distance", "rkd_angle"], lr=0.5)
