"""The shared loss blocks against numpy formulas: Hinton's temperature-scaled KL, soft cross-entropy, pooling and
the spatial matching of AT / NST (area interpolation of the larger map to the smaller size)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.distill.functional import kl_div, match_spatial, pool_flatten, soft_cross_entropy


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def np_kd(s: np.ndarray, t: np.ndarray, temp: float) -> float:
    """T^2 * mean over samples of KL(softmax(t / T) || softmax(s / T))."""
    lt, ls = np_log_softmax(t / temp), np_log_softmax(s / temp)
    return float(temp ** 2 * (np.exp(lt) * (lt - ls)).sum(1).mean())


@pytest.fixture(scope="module")
def logits():
    rng = np.random.default_rng(0)
    return rng.standard_normal((5, 7)) * 3, rng.standard_normal((5, 7)) * 3


@pytest.mark.parametrize("temp", [1.0, 2.5, 0.7])
def test_kl_div_equals_hintons_formula(logits, temp):
    s, t = logits
    got = kl_div(torch.as_tensor(s), torch.as_tensor(t), temp)
    assert float(got) == pytest.approx(np_kd(s, t, temp), rel=1e-10)


def test_kl_div_default_temperature_is_one_and_reductions(logits):
    s, t = map(torch.as_tensor, logits)
    assert float(kl_div(s, t)) == pytest.approx(np_kd(*logits, 1.0), rel=1e-10)
    assert float(kl_div(s, t, 2.0, reduction="sum")) == pytest.approx(5 * np_kd(*logits, 2.0), rel=1e-10)
    assert float(kl_div(s, s, 3.0)) == pytest.approx(0.0, abs=1e-12)


def test_soft_cross_entropy_equals_formula(logits):
    s, t = logits
    p = np.exp(np_log_softmax(t))
    ref = float(-(p * np_log_softmax(s)).sum(1).mean())
    assert float(soft_cross_entropy(torch.as_tensor(s), torch.as_tensor(p))) == pytest.approx(ref, rel=1e-10)


def test_pool_flatten_averages_space_and_tokens():
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5))
    np.testing.assert_allclose(pool_flatten(torch.as_tensor(x)).numpy(), x.mean((2, 3)), rtol=1e-12)
    tok = np.random.default_rng(2).standard_normal((2, 6, 4))
    np.testing.assert_allclose(pool_flatten(torch.as_tensor(tok)).numpy(), tok.mean(1), rtol=1e-12)
    flat = torch.randn(3, 4)
    assert torch.equal(pool_flatten(flat), flat)


def _area(x: np.ndarray, fh: int, fw: int) -> np.ndarray:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // fh, fh, w // fw, fw).mean((3, 5))


def test_match_spatial_brings_both_maps_to_the_smaller_height_and_width():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2, 3, 4, 10))  # taller map is b, wider map is a
    b = rng.standard_normal((2, 5, 8, 5))
    ma, mb = match_spatial(torch.as_tensor(a), torch.as_tensor(b))
    assert ma.shape == (2, 3, 4, 5) and mb.shape == (2, 5, 4, 5)
    np.testing.assert_allclose(ma.numpy(), _area(a, 1, 2), rtol=1e-12)
    np.testing.assert_allclose(mb.numpy(), _area(b, 2, 1), rtol=1e-12)
    # one map larger in both dimensions: only it is pooled
    big = rng.standard_normal((1, 2, 6, 9))
    small = torch.as_tensor(rng.standard_normal((1, 2, 3, 3)))
    ma, mb = match_spatial(torch.as_tensor(big), small)
    np.testing.assert_allclose(ma.numpy(), _area(big, 2, 3), rtol=1e-12)
    assert mb is small
    mb, ma = match_spatial(small, torch.as_tensor(big))
    np.testing.assert_allclose(ma.numpy(), _area(big, 2, 3), rtol=1e-12)
    assert mb is small
