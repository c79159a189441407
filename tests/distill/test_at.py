"""AT: hand-derived attention-map loss (equal and mismatched sizes), scale invariance, MLP error, training."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdlab.distill.methods.at import at_loss
from kdlab.errors import ConfigError

from .helpers import check_finite_gradients, check_sgd_reduces, make, teacher_twin

RNG = np.random.default_rng(1)
FS = RNG.normal(size=(2, 3, 4, 4))
FT = RNG.normal(size=(2, 5, 4, 4))


def np_attention(f: np.ndarray, p: float) -> np.ndarray:
    """(N, C, H, W) -> (N, H*W): mean over channels of |f|^p, each row divided by its L2 norm."""
    n, c, h, w = f.shape
    out = np.zeros((n, h * w))
    for i in range(n):
        for y in range(h):
            for x in range(w):
                out[i, y * w + x] = sum(abs(f[i, k, y, x]) ** p for k in range(c)) / c
        out[i] /= math.sqrt(sum(v * v for v in out[i]))
    return out


def np_at(fs: np.ndarray, ft: np.ndarray, p: float) -> float:
    qs, qt = np_attention(fs, p), np_attention(ft, p)
    return float(((qs - qt) ** 2).sum() / qs.size)


def np_pool2(f: np.ndarray) -> np.ndarray:
    """2x2 block average (what area interpolation from 4x4 to 2x2 is)."""
    n, c, h, w = f.shape
    out = np.zeros((n, c, h // 2, w // 2))
    for y in range(h // 2):
        for x in range(w // 2):
            out[:, :, y, x] = (f[:, :, 2 * y, 2 * x] + f[:, :, 2 * y + 1, 2 * x] + f[:, :, 2 * y, 2 * x + 1]
                               + f[:, :, 2 * y + 1, 2 * x + 1]) / 4
    return out


@pytest.mark.parametrize("p", [2.0, 1.0, 3.0])
def test_at_loss_matches_hand_derived(p):
    assert float(at_loss(torch.tensor(FS), torch.tensor(FT), p)) == pytest.approx(np_at(FS, FT, p), rel=1e-10)


def test_at_loss_resizes_the_larger_map():
    small_t = FT[:, :, :2, :2].copy()
    expected = np_at(np_pool2(FS), small_t, 2.0)
    assert float(at_loss(torch.tensor(FS), torch.tensor(small_t))) == pytest.approx(expected, rel=1e-10)
    # and the other way round (student smaller than teacher)
    expected = np_at(FS[:, :, :2, :2], np_pool2(FT), 2.0)
    assert float(at_loss(torch.tensor(FS[:, :, :2, :2].copy()), torch.tensor(FT))) == pytest.approx(expected,
                                                                                                   rel=1e-10)


def test_at_invariant_to_feature_scaling_and_zero_for_identical():
    fs, ft = torch.tensor(FS), torch.tensor(FT)
    base = float(at_loss(fs, ft))
    assert float(at_loss(7.0 * fs, 0.01 * ft)) == pytest.approx(base, rel=1e-10)
    assert float(at_loss(ft, 3.0 * ft)) == pytest.approx(0.0, abs=1e-15)


def test_at_rejects_a_student_without_spatial_maps():
    with pytest.raises(ConfigError, match="spatial feature maps") as err:
        make("at", "mlp")
    assert "blocks." in str(err.value) and "rkd" in str(err.value) and "fitnets" in str(err.value)


def test_at_distiller_finite_gradients_and_zero_for_a_copy():
    d = make("at")
    step = check_finite_gradients(d, {"ce", "at"})
    assert teacher_twin(d).forward_train(step.x, step.y)[1]["at"].item() == pytest.approx(0.0, abs=1e-10)


def test_at_sgd_steps_reduce_the_attention_term():
    check_sgd_reduces(make("at", ce_weight=0.0, feat_weight=1.0), ["at"], lr=0.5)
