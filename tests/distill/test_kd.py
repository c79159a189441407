"""Hinton KD: both loss terms against the formula, computed independently in numpy (float64 throughout, so the
tolerance is tight: in float32 the KL of softened distributions loses ~1e-5 to cancellation)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from .helpers import IN, make, np_log_softmax


@pytest.mark.parametrize("ce_weight,kd_weight,temperature", [(1.0, 0.5, 4.0), (0.3, 3.0, 1.5), (0.7, 0.0, 2.0)])
def test_kd_terms_follow_the_formula(ce_weight, kd_weight, temperature):
    """ce = ce_weight * CE(z_s, y); kd = kd_weight * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)), the KL summed over
    classes and averaged over the batch (``batchmean``)."""
    d = make("kd", "mlp", ce_weight=ce_weight, kd_weight=kd_weight, temperature=temperature).double()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, *IN, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 4, 9])
    _, terms = d.forward_train(x, y)
    assert set(terms) == {"ce", "kd"}
    with torch.no_grad():
        zs, zt = d.student(x).numpy(), d.teacher(x).numpy()
    lt, ls = np_log_softmax(zt / temperature), np_log_softmax(zs / temperature)
    kl = np.mean(np.sum(np.exp(lt) * (lt - ls), axis=1))
    assert kl > 1e-3  # the teacher and student disagree, so the weight matters
    assert terms["kd"].item() == pytest.approx(kd_weight * temperature**2 * kl, rel=1e-9, abs=1e-15)
    ce = -np.mean(np_log_softmax(zs)[np.arange(len(y)), y.numpy()])
    assert terms["ce"].item() == pytest.approx(ce_weight * ce, rel=1e-9)
