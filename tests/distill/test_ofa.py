"""OFA: the loss against a hand-derived value, its eps = 1 limit, branch heads, gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.distill.functional import soft_cross_entropy
from kdlab.distill.methods.ofa import branch_head, ofa_loss

from .helpers import check_finite_gradients, make, np_softmax

S = np.array([[1.0, 2.0, 0.5, -0.5], [0.3, -1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
T = np.array([[2.0, 1.0, 0.0, 0.5], [0.5, 0.5, 1.5, -1.0], [3.0, -2.0, 0.0, 0.0]])
Y = np.array([1, 2, 0])


def np_ofa(s: np.ndarray, t: np.ndarray, y: np.ndarray, eps: float, temp: float) -> float:
    q, p = np_softmax(s / temp), np_softmax(t / temp)
    total = 0.0
    for i in range(len(y)):
        total -= ((1.0 + p[i, y[i]]) ** eps - 1.0) * np.log(q[i, y[i]])
        for c in range(s.shape[1]):
            if c != y[i]:
                total -= p[i, c] ** eps * np.log(q[i, c])
    return total / len(y)


@pytest.mark.parametrize("eps,temp", [(1.0, 1.0), (1.5, 1.0), (2.0, 3.0), (0.5, 2.0)])
def test_ofa_loss_matches_hand_derived(eps, temp):
    got = ofa_loss(torch.tensor(S), torch.tensor(T), torch.tensor(Y), eps, temp)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(np_ofa(S, T, Y, eps, temp), rel=1e-12)


def test_ofa_eps_one_is_soft_cross_entropy():
    s, t = torch.tensor(S), torch.tensor(T)
    expected = soft_cross_entropy(s, torch.softmax(t, 1))
    assert float(ofa_loss(s, t, torch.tensor(Y), 1.0)) == pytest.approx(float(expected), rel=1e-12)


def test_ofa_enhancement_grows_with_teacher_target_confidence():
    # eps > 1 adds weight (1 + p)^eps - 1 - p > 0 on the target's -log q, more when p is larger.
    s = torch.zeros(1, 3, dtype=torch.float64)
    y = torch.tensor([0])
    gaps = []
    for t0 in (0.0, 2.0, 5.0):
        t = torch.tensor([[t0, 0.0, 0.0]], dtype=torch.float64)
        gaps.append(float(ofa_loss(s, t, y, 1.5) - ofa_loss(s, t, y, 1.0)))
    assert gaps[0] < gaps[1] < gaps[2]


@pytest.mark.parametrize("shape", [(8, 5, 5), (6, 12), (12,)])
def test_branch_head_maps_any_feature_to_logits(shape):
    head = branch_head(shape, 7)
    assert head(torch.randn(3, *shape)).shape == (3, 7)


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_ofa_distiller_finite_gradients(student):
    d = make("ofa", student)
    assert len(d.branches) == len(d.student.kdlab_taps["stages"])
    assert d.teacher_layers == []  # only the teacher's logits are needed (small cache)
    # finite gradients on the student and every branch head, none on the teacher
    check_finite_gradients(d, {"ce", "ofa", "ofa_branches"}, n=4, extra=list(d.branches))
