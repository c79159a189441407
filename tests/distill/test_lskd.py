"""LSKD: hand-derived z-scored KD, equality with KD on standardised logits, invariances, training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.distill.functional import kl_div
from kdlab.distill.methods.lskd import lskd_loss, standardize_logits

from .helpers import check_finite_gradients, check_sgd_reduces, make, np_kl, np_softmax

S = np.array([[1.0, 2.0, 0.5, -0.5], [0.3, -1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
T = np.array([[2.0, 1.0, 0.0, 0.5], [0.5, 0.5, 1.5, -1.0], [3.0, -2.0, 0.0, 0.0]])


def np_zscore(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z)
    for i, row in enumerate(z):
        mean = sum(row) / len(row)
        std = (sum((v - mean) ** 2 for v in row) / (len(row) - 1)) ** 0.5  # unbiased, as the authors' code
        out[i] = (row - mean) / (std + 1e-7)
    return out


def np_lskd(s: np.ndarray, t: np.ndarray, temp: float) -> float:
    zs, zt = np_zscore(s) / temp, np_zscore(t) / temp
    total = 0.0
    for i in range(len(s)):
        total += np_kl(np_softmax(zt[i]), np_softmax(zs[i]))
    return total / len(s) * temp**2


@pytest.mark.parametrize("temp", [1.0, 2.0, 3.5])
def test_lskd_matches_hand_derived(temp):
    got = lskd_loss(torch.tensor(S), torch.tensor(T), temp)
    assert float(got) == pytest.approx(np_lskd(S, T, temp), rel=1e-10)


def test_lskd_is_kd_on_standardised_logits():
    zs, zt = torch.tensor(np_zscore(S)), torch.tensor(np_zscore(T))
    np.testing.assert_allclose(standardize_logits(torch.tensor(S)).numpy(), zs.numpy(), rtol=1e-12)
    for temp in (1.0, 2.0):
        assert float(lskd_loss(torch.tensor(S), torch.tensor(T), temp)) == pytest.approx(
            float(kl_div(zs, zt, temp)), rel=1e-12)


def test_lskd_invariant_to_logit_shift_and_scale():
    s, t = torch.tensor(S), torch.tensor(T)
    base = float(lskd_loss(s, t, 2.0))
    scale = torch.tensor([[0.5], [3.0], [10.0]], dtype=torch.float64)
    assert float(lskd_loss(s * scale + 7.0, t * 4.0 - 1.0, 2.0)) == pytest.approx(base, rel=1e-6)
    # identical up to an affine map -> identical after standardisation -> 0
    assert float(lskd_loss(t * 5.0 + 2.0, t, 2.0)) == pytest.approx(0.0, abs=1e-12)


def test_lskd_defaults_follow_the_paper_recipe():
    d = make("lskd")
    assert (d.hp["ce_weight"], d.hp["kd_weight"], d.hp["temperature"]) == (0.1, 9.0, 2.0)


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_lskd_distiller_finite_gradients(student):
    check_finite_gradients(make("lskd", student), {"ce", "kd"})


def test_lskd_sgd_steps_reduce_the_distillation_term():
    check_sgd_reduces(make("lskd", "mlp", ce_weight=0.0, kd_weight=1.0), ["kd"], lr=0.1)
