"""LSKD: hand-derived z-scored KD, equality with KD on standardised logits, invariances, training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.distill import create_distiller
from kdlab.distill.functional import kl_div
from kdlab.distill.methods.lskd import lskd_loss, standardize_logits
from kdlab.models import create

IN = (1, 28, 28)
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
        ps = np.exp(zs[i]) / np.exp(zs[i]).sum()
        pt = np.exp(zt[i]) / np.exp(zt[i]).sum()
        total += sum(pt[k] * np.log(pt[k] / ps[k]) for k in range(len(pt)))
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


def _make(student: str = "convnet", **params):
    torch.manual_seed(0)
    teacher = create("convnet", 10, IN, width=16)
    st = create(student, 10, IN, width=8 if student == "convnet" else 32)
    return create_distiller("lskd", teacher, st, IN, **params)


def test_lskd_defaults_follow_the_paper_recipe():
    d = _make()
    assert (d.hp["ce_weight"], d.hp["kd_weight"], d.hp["temperature"]) == (0.1, 9.0, 2.0)


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_lskd_distiller_finite_gradients(student):
    d = _make(student)
    x, y = torch.randn(6, *IN), torch.tensor([0, 1, 2, 3, 4, 5])
    d.train()
    logits, terms = d.forward_train(x, y)
    assert set(terms) == {"ce", "kd"} and logits.shape == (6, 10)
    loss = sum(terms.values())
    loss.backward()
    grads = [p.grad for p in d.student.parameters()]
    assert torch.isfinite(loss) and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_lskd_sgd_steps_reduce_the_distillation_term():
    d = _make("mlp", ce_weight=0.0, kd_weight=1.0)
    x, y = torch.randn(8, *IN), torch.arange(8)
    t_out = d.teacher_forward(x)
    opt = torch.optim.SGD(d.trainable_parameters(), lr=0.1)
    values = []
    for _ in range(6):
        _, terms = d.forward_train(x, y, t_out)
        values.append(terms["kd"].item())
        opt.zero_grad()
        terms["kd"].backward()
        opt.step()
    assert all(b < a for a, b in zip(values, values[1:], strict=False)) and values[-1] < 0.9 * values[0]
