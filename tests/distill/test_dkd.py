"""DKD: hand-derived TCKD/NCKD, the paper's decomposition of KD, warm-up, gradients, training."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdlab.distill.methods.dkd import dkd_loss, dkd_terms

from .helpers import IN, check_finite_gradients, check_sgd_reduces, make, np_kl, np_softmax

S = np.array([[1.0, 2.0, 0.5, -0.5], [0.3, -1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
T = np.array([[2.0, 1.0, 0.0, 0.5], [0.5, 0.5, 1.5, -1.0], [3.0, -2.0, 0.0, 0.0]])
Y = np.array([1, 2, 0])


def np_dkd_terms(s, t, y, temp):
    """Per sample (TCKD, NCKD): binary [p_y, 1 - p_y] KL and KL of the renormalised non-target probs."""
    out = []
    for i in range(len(y)):
        ps, pt = np_softmax(s[i] / temp), np_softmax(t[i] / temp)
        bs, bt = np.array([ps[y[i]], 1 - ps[y[i]]]), np.array([pt[y[i]], 1 - pt[y[i]]])
        others = [c for c in range(s.shape[1]) if c != y[i]]
        qs, qt = ps[others] / ps[others].sum(), pt[others] / pt[others].sum()
        out.append((np_kl(bt, bs) * temp**2, np_kl(qt, qs) * temp**2))
    return np.array(out)


@pytest.mark.parametrize("alpha,beta,temp",
                         [(1.0, 8.0, 4.0), (1.0, 1.0, 1.0), (0.5, 2.0, 2.0), (0.0, 3.0, 0.7)])
def test_dkd_loss_matches_hand_derived(alpha, beta, temp):
    terms = np_dkd_terms(S, T, Y, temp)
    expected = (alpha * terms[:, 0] + beta * terms[:, 1]).mean()
    got = dkd_loss(torch.tensor(S), torch.tensor(T), torch.tensor(Y), alpha, beta, temp)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(expected, rel=1e-12)
    tckd, nckd = dkd_terms(torch.tensor(S), torch.tensor(T), torch.tensor(Y), temp)
    np.testing.assert_allclose(tckd.numpy(), terms[:, 0], rtol=1e-12)
    np.testing.assert_allclose(nckd.numpy(), terms[:, 1], rtol=1e-12)


@pytest.mark.parametrize("temp", [1.0, 4.0])
def test_kd_equals_tckd_plus_weighted_nckd(temp):
    # Zhao et al., Eq. (5): KD = TCKD + (1 - p^T_target) * NCKD, per sample.
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 7)) * 3, rng.normal(size=(5, 7)) * 3
    y = torch.tensor([0, 3, 6, 2, 2])
    s_t, t_t = torch.tensor(s), torch.tensor(t)
    kd = F.kl_div(F.log_softmax(s_t / temp, 1), F.log_softmax(t_t / temp, 1), reduction="none",
                  log_target=True).sum(1) * temp**2
    tckd, nckd = dkd_terms(s_t, t_t, y, temp)
    p_target = torch.softmax(t_t / temp, 1).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(kd, tckd + (1 - p_target) * nckd, rtol=1e-12, atol=1e-14)
    # so DKD with alpha = 1 and beta = 1 - p_t (one sample at a time) is exactly KD
    for i in range(5):
        one = dkd_loss(s_t[i:i + 1], t_t[i:i + 1], y[i:i + 1], 1.0, float(1 - p_target[i]), temp)
        assert float(one) == pytest.approx(float(kd[i]), rel=1e-12)


def test_dkd_zero_for_identical_logits_and_stable_for_large_ones():
    z = torch.tensor(T)
    assert float(dkd_loss(z, z, torch.tensor(Y), 1.0, 8.0, 4.0)) == pytest.approx(0.0, abs=1e-14)
    big_s, big_t = torch.tensor(S, dtype=torch.float32) * 500, torch.tensor(T, dtype=torch.float32) * 500
    assert torch.isfinite(dkd_loss(big_s, big_t, torch.tensor(Y), 1.0, 8.0, 1.0))


def test_dkd_warmup_follows_progress():
    d = make("dkd", warmup=0.5)
    x, y = torch.randn(4, *IN), torch.tensor([0, 1, 2, 3])
    t_out = d.teacher_forward(x)
    full = None
    for progress, factor in [(1.0, 1.0), (0.0, 0.0), (0.25, 0.5), (0.9, 1.0)]:
        d.set_progress(progress)
        _, terms = d.forward_train(x, y, t_out)
        if full is None:
            full = {k: terms[k].item() for k in ("tckd", "nckd")}
            assert full["tckd"] > 0 and full["nckd"] > 0
        for k in ("tckd", "nckd"):
            assert terms[k].item() == pytest.approx(factor * full[k], rel=1e-5, abs=1e-12)


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_dkd_distiller_finite_gradients(student):
    d = make("dkd", student)
    d.set_progress(1.0)
    check_finite_gradients(d, {"ce", "tckd", "nckd"})  # the frozen teacher gets no gradient either


def test_dkd_sgd_steps_reduce_the_distillation_term():
    check_sgd_reduces(make("dkd", "mlp", ce_weight=0.0, warmup=0.0), ["tckd", "nckd"], lr=0.05)
