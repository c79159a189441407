"""Margin-MSE: ranking and classifier forms against hand-derived values, shift invariance, gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.distill.methods.margin_mse import label_margins, margin_mse, margin_mse_logits

from .helpers import check_finite_gradients, make

S = np.array([[1.0, 2.0, 0.5, -0.5], [0.3, -1.0, 2.0, 0.0]])
T = np.array([[2.0, 1.0, 0.0, 0.5], [0.5, 0.5, 1.5, -1.0]])
Y = np.array([1, 2])


def np_margin_mse_logits(s, t, y):
    sq = []
    for i in range(len(y)):
        for c in range(s.shape[1]):
            if c != y[i]:
                sq.append(((s[i, y[i]] - s[i, c]) - (t[i, y[i]] - t[i, c])) ** 2)
    return float(np.mean(sq))


def test_ranking_margin_mse_hand_derived():
    sp, sn = np.array([3.0, 1.0, 0.5]), np.array([1.0, 2.0, 0.0])
    tp, tn = np.array([10.0, 4.0, 7.0]), np.array([9.0, 6.0, 1.0])
    expected = np.mean([((3 - 1) - (10 - 9)) ** 2, ((1 - 2) - (4 - 6)) ** 2, ((0.5 - 0) - (7 - 1)) ** 2])
    got = margin_mse(*(torch.tensor(a) for a in (sp, sn, tp, tn)))
    assert float(got) == pytest.approx(expected, rel=1e-12)
    assert float(margin_mse(*(torch.tensor(a) + 7.0 for a in (sp, sn)),
                            *(torch.tensor(a) - 3.0 for a in (tp, tn)))) == pytest.approx(expected, rel=1e-12)


def test_label_margins_layout():
    m = label_margins(torch.tensor(S), torch.tensor(Y))
    np.testing.assert_allclose(m.numpy(), [[2 - 1, 2 - 0.5, 2 + 0.5], [2 - 0.3, 2 + 1, 2 - 0]])


def test_classifier_margin_mse_hand_derived():
    got = margin_mse_logits(torch.tensor(S), torch.tensor(T), torch.tensor(Y))
    assert float(got) == pytest.approx(np_margin_mse_logits(S, T, Y), rel=1e-12)


def test_invariant_to_constant_shift_and_zero_when_equal():
    s, t, y = torch.tensor(S), torch.tensor(T), torch.tensor(Y)
    base = float(margin_mse_logits(s, t, y))
    shifted = margin_mse_logits(s + torch.tensor([[5.0], [-2.0]], dtype=s.dtype), t - 3.0, y)
    assert float(shifted) == pytest.approx(base, rel=1e-12)
    assert float(margin_mse_logits(t + 4.0, t, y)) == pytest.approx(0.0, abs=1e-14)


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_margin_mse_distiller_finite_gradients(student):
    check_finite_gradients(make("margin_mse", student, conv_width=16, kd_weight=0.5), {"ce", "kd"}, n=4)
