"""BD-KD: the balanced divergence against a hand-derived value, its limits, gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.distill.functional import kl_div
from kdlab.distill.methods.bdkd import bd_kd_loss, entropy

from .helpers import check_finite_gradients, make, np_kl, np_softmax

# sample 0: student flatter than teacher (reverse KL favoured); sample 1: student sharper (forward KL)
S = np.array([[0.1, 0.2, 0.0, -0.1], [4.0, -1.0, 0.0, 0.5]])
T = np.array([[3.0, 0.0, -1.0, 0.5], [1.0, 0.5, 0.0, 0.2]])


def np_bd(s, t, temp, dominant, other):
    ps, pt = np_softmax(s / temp), np_softmax(t / temp)
    total = 0.0
    for i in range(len(s)):
        fwd, rev = np_kl(pt[i], ps[i]), np_kl(ps[i], pt[i])
        h_s, h_t = -np.sum(ps[i] * np.log(ps[i])), -np.sum(pt[i] * np.log(pt[i]))
        w_fwd, w_rev = (other, dominant) if h_s > h_t else (dominant, other)
        total += w_fwd * fwd + w_rev * rev
    return total / len(s) * temp**2


def test_entropy_hand_derived():
    p = np_softmax(S)
    np.testing.assert_allclose(entropy(torch.tensor(S)).numpy(), -(p * np.log(p)).sum(1), rtol=1e-12)


@pytest.mark.parametrize("temp,dominant,other", [(1.0, 2.0, 1.0), (4.0, 2.0, 1.0), (2.0, 3.0, 0.5)])
def test_bd_kd_matches_hand_derived(temp, dominant, other):
    ent = entropy(torch.tensor(S), temp) > entropy(torch.tensor(T), temp)
    assert ent.tolist() == [True, False]  # both branches of the weighting are exercised
    got = bd_kd_loss(torch.tensor(S), torch.tensor(T), temp, dominant, other)
    assert float(got) == pytest.approx(np_bd(S, T, temp, dominant, other), rel=1e-12)


@pytest.mark.parametrize("w", [1.0, 0.5])
def test_equal_weights_is_forward_plus_reverse_kl(w):
    s, t = torch.tensor(S), torch.tensor(T)
    expected = w * (kl_div(s, t, 3.0) + kl_div(t, s, 3.0))
    assert float(bd_kd_loss(s, t, 3.0, w, w)) == pytest.approx(float(expected), rel=1e-12)


def test_identical_distributions_give_zero():
    s = torch.tensor(S)
    assert float(bd_kd_loss(s, s.clone(), 2.0)) == pytest.approx(0.0, abs=1e-14)
    assert float(bd_kd_loss(s, s + 5.0, 2.0)) == pytest.approx(0.0, abs=1e-12)  # shift-invariant softmax


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_bdkd_distiller_finite_gradients(student):
    check_finite_gradients(make("bdkd", student, conv_width=16), {"ce", "kd"}, n=4)
