"""DIST: hand-derived inter/intra Pearson relation losses, limits and invariances, gradients, training."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdlab.distill.methods.dist import dist_loss, dist_terms

from .helpers import check_finite_gradients, check_sgd_reduces, make, np_softmax

S = np.array([[1.0, 2.0, 0.5, -0.5], [0.3, -1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
T = np.array([[2.0, 1.0, 0.0, 0.5], [0.5, 0.5, 1.5, -1.0], [3.0, -2.0, 0.0, 0.0]])


def np_pearson(a: list[float], b: list[float]) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    num = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    den = math.sqrt(sum((x - ma) ** 2 for x in a)) * math.sqrt(sum((y - mb) ** 2 for y in b))
    return num / (den + 1e-8)


def np_dist(s, t, beta, gamma, tau):
    ps, pt = np_softmax(s / tau), np_softmax(t / tau)
    n, c = ps.shape
    inter = 1 - sum(np_pearson(list(ps[i]), list(pt[i])) for i in range(n)) / n
    intra = 1 - sum(np_pearson(list(ps[:, k]), list(pt[:, k])) for k in range(c)) / c
    return tau**2 * inter, tau**2 * intra, tau**2 * (beta * inter + gamma * intra)


@pytest.mark.parametrize("beta,gamma,tau", [(1.0, 1.0, 1.0), (2.0, 2.0, 4.0), (0.5, 3.0, 0.5)])
def test_dist_loss_matches_hand_derived(beta, gamma, tau):
    inter, intra, total = np_dist(S, T, beta, gamma, tau)
    s, t = torch.tensor(S), torch.tensor(T)
    got_inter, got_intra = dist_terms(s, t, tau)
    assert float(got_inter) == pytest.approx(inter, rel=1e-10)
    assert float(got_intra) == pytest.approx(intra, rel=1e-10)
    assert float(dist_loss(s, t, beta, gamma, tau)) == pytest.approx(total, rel=1e-10)


def test_dist_limits_and_invariances():
    s, t = torch.tensor(S), torch.tensor(T)
    # identical predictions: perfectly correlated, both losses 0 (up to the 1e-8 in rho's denominator)
    inter, intra = dist_terms(t, t, 2.0)
    assert 0.0 <= float(inter) < 1e-5 and 0.0 <= float(intra) < 1e-5
    # a per-sample logit shift leaves softmax and so the loss unchanged
    shift = torch.tensor([[3.0], [-1.0], [10.0]], dtype=torch.float64)
    assert float(dist_loss(s + shift, t, 1.0, 1.0, 1.0)) == pytest.approx(float(dist_loss(s, t, 1, 1, 1)),
                                                                           rel=1e-10)
    # relations are bounded: 1 - rho lies in [0, 2]
    inter, intra = dist_terms(s, t, 1.0)
    assert 0.0 <= float(inter) <= 2.0 and 0.0 <= float(intra) <= 2.0


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_dist_distiller_finite_gradients(student):
    check_finite_gradients(make("dist", student), {"ce", "inter", "intra"})


def test_dist_sgd_steps_reduce_the_distillation_term():
    check_sgd_reduces(make("dist", "mlp", ce_weight=0.0), ["inter", "intra"], lr=0.1)
