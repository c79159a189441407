"""PKT: hand-derived cosine-kernel density KL, zero for matching similarity structure, training."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdlab.distill.methods.pkt import pkt_loss

from .helpers import IN, check_finite_gradients, check_sgd_reduces, make, teacher_twin

RNG = np.random.default_rng(4)
ES = RNG.normal(size=(4, 3))
ET = RNG.normal(size=(4, 6))
EPS = 1e-7


def np_densities(e: np.ndarray) -> list[list[float]]:
    n = len(e)
    unit = [row / (math.sqrt(sum(v * v for v in row)) + EPS) for row in e]
    k = [[(float(np.dot(unit[i], unit[j])) + 1) / 2 for j in range(n)] for i in range(n)]
    return [[k[i][j] / sum(k[i]) for j in range(n)] for i in range(n)]


def np_pkt(s: np.ndarray, t: np.ndarray) -> float:
    ps, pt = np_densities(s), np_densities(t)
    n = len(s)
    return sum(pt[i][j] * math.log((pt[i][j] + EPS) / (ps[i][j] + EPS))
               for i in range(n) for j in range(n)) / n**2


def test_pkt_loss_matches_hand_derived():
    assert float(pkt_loss(torch.tensor(ES), torch.tensor(ET))) == pytest.approx(np_pkt(ES, ET), rel=1e-10)


def test_pkt_zero_for_identical_and_invariant_to_scale_and_rotation():
    s, t = torch.tensor(ES), torch.tensor(ET)
    assert float(pkt_loss(t, t)) == 0.0
    base = float(pkt_loss(s, t))
    assert base > 0
    q, _ = torch.linalg.qr(torch.tensor(RNG.normal(size=(3, 3))))
    per_sample = torch.tensor([[0.5], [2.0], [9.0], [3.0]], dtype=torch.float64)
    # only cosines enter (up to the 1e-7 added to each norm)
    assert float(pkt_loss(per_sample * (s @ q), t)) == pytest.approx(base, rel=1e-5)


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_pkt_distiller_finite_gradients(student):
    check_finite_gradients(make("pkt", student), {"ce", "pkt"})


def test_pkt_distiller_zero_for_a_copy_of_the_teacher():
    _, terms = teacher_twin(make("pkt")).forward_train(torch.randn(5, *IN), torch.arange(5))
    assert terms["pkt"].item() == pytest.approx(0.0, abs=1e-6)


def test_pkt_sgd_steps_reduce_the_divergence():
    check_sgd_reduces(make("pkt", "mlp", ce_weight=0.0, feat_weight=100.0), ["pkt"], lr=0.5)
