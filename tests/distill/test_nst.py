"""NST: hand-derived polynomial-kernel MMD, limits and invariances, MLP error, gradients, training."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdlab.distill.methods.nst import nst_loss
from kdlab.errors import ConfigError

from .helpers import check_finite_gradients, check_sgd_reduces, make

RNG = np.random.default_rng(2)
FS = RNG.normal(size=(2, 3, 2, 2))
FT = RNG.normal(size=(2, 4, 2, 2))


def np_nst(fs: np.ndarray, ft: np.ndarray) -> float:
    n = fs.shape[0]

    def channels(f, i):
        rows = [f[i, c].reshape(-1) for c in range(f.shape[1])]
        return [r / math.sqrt(sum(v * v for v in r)) for r in rows]

    def mean_k(a, b):  # mean over pairs of (a_c . b_d)^2
        return sum(float(np.dot(x, y)) ** 2 for x in a for y in b) / (len(a) * len(b))

    total = 0.0
    for i in range(n):
        s, t = channels(fs, i), channels(ft, i)
        total += mean_k(t, t) + mean_k(s, s) - 2 * mean_k(s, t)
    return total / n


def test_nst_loss_matches_hand_derived():
    assert float(nst_loss(torch.tensor(FS), torch.tensor(FT))) == pytest.approx(np_nst(FS, FT), rel=1e-10)


def test_nst_limits_and_invariances():
    fs, ft = torch.tensor(FS), torch.tensor(FT)
    base = float(nst_loss(fs, ft))
    assert base > 0
    assert float(nst_loss(ft, ft)) == pytest.approx(0.0, abs=1e-12)
    # channels are a set of samples: permuting or rescaling them changes nothing
    assert float(nst_loss(4.0 * fs[:, [2, 0, 1]], ft)) == pytest.approx(base, rel=1e-10)
    # a larger student map is area-pooled to the teacher's size
    big = fs.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert float(nst_loss(big, ft)) == pytest.approx(base, rel=1e-10)


def test_nst_rejects_a_student_without_spatial_maps():
    with pytest.raises(ConfigError, match="spatial feature maps"):
        make("nst", "mlp")


def test_nst_distiller_finite_gradients():
    check_finite_gradients(make("nst"), {"ce", "nst"})


def test_nst_sgd_steps_reduce_the_mmd():
    check_sgd_reduces(make("nst", ce_weight=0.0, feat_weight=1.0), ["nst"], lr=0.5)
