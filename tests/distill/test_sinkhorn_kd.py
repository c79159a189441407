"""Sinkhorn KD: hand-derived batch-wise Sinkhorn distance, its exact-OT and identity limits, training."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from kdlab.distill.methods.sinkhorn_kd import sinkhorn_kd_loss, sinkhorn_plan

from .helpers import check_finite_gradients, check_sgd_reduces, make, np_softmax

S = np.array([[1.0, 2.0, 0.5, -0.5], [0.3, -1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
T = np.array([[2.0, 1.0, 0.0, 0.5], [0.5, 0.5, 1.5, -1.0], [3.0, -2.0, 0.0, 0.0]])


def np_cost(s: np.ndarray, t: np.ndarray, temp: float) -> np.ndarray:
    ps, pt = np_softmax(s / temp), np_softmax(t / temp)
    n = len(ps)
    return np.array([[sum(abs(ps[i, c] - pt[j, c]) for c in range(ps.shape[1])) for j in range(n)]
                     for i in range(n)])


def np_sinkhorn(s: np.ndarray, t: np.ndarray, temp: float, eps: float, iters: int) -> float:
    """The authors' algorithm in plain float64: divide rows, then columns, by their sums, ``iters`` times."""
    w = np_cost(s, t, temp)
    n = len(w)
    p = np.exp(-w / eps)
    for _ in range(iters):
        for i in range(n):
            p[i, :] = p[i, :] / sum(p[i, :])
        for j in range(n):
            p[:, j] = p[:, j] / sum(p[:, j])
    return sum(p[i, j] * w[i, j] for i in range(n) for j in range(n)) / n


@pytest.mark.parametrize("temp,eps,iters", [(2.0, 0.1, 20), (1.0, 0.5, 3), (4.0, 0.05, 1), (1.0, 1.0, 50)])
def test_sinkhorn_kd_matches_hand_derived(temp, eps, iters):
    got = sinkhorn_kd_loss(torch.tensor(S), torch.tensor(T), temp, eps, iters)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(np_sinkhorn(S, T, temp, eps, iters), rel=1e-10)


def test_sinkhorn_plan_has_unit_marginals():
    cost = torch.tensor(np_cost(S, T, 1.0))
    plan = sinkhorn_plan(cost, 0.1, 200)
    torch.testing.assert_close(plan.sum(0), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(plan.sum(1), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-8)


def test_sinkhorn_small_epsilon_approaches_exact_optimal_transport():
    # Between two uniform empirical measures, exact OT is the best assignment: min over permutations.
    w = np_cost(S, T, 1.0)
    exact = min(sum(w[i, sigma[i]] for i in range(3)) / 3 for sigma in itertools.permutations(range(3)))
    gaps = [float(sinkhorn_kd_loss(torch.tensor(S), torch.tensor(T), 1.0, eps, 500)) - exact
            for eps in (0.2, 0.05, 0.002)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-3 * exact
    assert gaps[2] >= -1e-9  # a plan with (nearly) these marginals costs at least the optimum


def test_sinkhorn_identical_predictions_go_to_zero_and_float32_is_stable():
    t = torch.tensor(T)
    assert float(sinkhorn_kd_loss(t, t, 1.0, 0.002, 50)) < 1e-8
    loose = float(sinkhorn_kd_loss(t, t, 1.0, 1.0, 20))
    assert 0.0 < loose < float(sinkhorn_kd_loss(torch.tensor(S), t, 1.0, 1.0, 20))  # entropic bias only
    # exp(-W / eps) underflows in float32 here; the log-domain iterations do not
    small = sinkhorn_kd_loss(torch.tensor(S, dtype=torch.float32), t.float(), 1.0, 0.001, 20)
    assert torch.isfinite(small)


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_sinkhorn_kd_distiller_finite_gradients(student):
    check_finite_gradients(make("sinkhorn_kd", student), {"ce", "kd", "sinkhorn"})


def test_sinkhorn_kd_sgd_steps_reduce_the_sinkhorn_term():
    check_sgd_reduces(make("sinkhorn_kd", "mlp", ce_weight=0.0, kd_weight=0.0, temperature=1.0), ["sinkhorn"],
                      lr=0.2)
