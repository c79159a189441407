"""CKA estimators against Kornblith et al.'s demo values, the HSIC formulas and CKA's invariances."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdlab.analysis.cka import (
    MinibatchCKA,
    center_gram,
    cka,
    few_samples_warning,
    gram_linear,
    gram_rbf,
    hsic1,
    linear_cka,
    minibatch_cka,
    pool_features,
    rbf_cka,
)
from kdlab.errors import ConfigError, ShapeError


@pytest.fixture(scope="module")
def demo():
    """The inputs of Kornblith et al.'s CKA demo notebook."""
    np.random.seed(1337)
    x = np.random.randn(100, 10)
    y = np.random.randn(100, 10) + x
    return x, y


def test_kornblith_demo_values(demo):
    x, y = demo
    assert round(cka(gram_linear(x), gram_linear(y)), 5) == 0.55761  # example-space form
    assert round(linear_cka(x, y), 5) == 0.55761  # feature-space form
    assert linear_cka(x, y) == pytest.approx(cka(gram_linear(x), gram_linear(y)), abs=1e-12)
    assert round(cka(gram_rbf(x, 0.5), gram_rbf(y, 0.5)), 5) == 0.65483
    assert round(rbf_cka(x, y, threshold=0.5), 5) == 0.65483
    assert round(cka(gram_linear(x), gram_linear(y), debiased=True), 5) == 0.51346
    assert round(linear_cka(x, y, debiased=True), 5) == 0.51346


def test_hsic1_matches_song_et_al_trace_formula(demo):
    """Unbiased HSIC (Song et al. 2012, eq. 5) written out with traces and sums, as torch-cka does."""
    x, y = demo
    k, l = gram_linear(x).numpy(), gram_linear(y).numpy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    n = len(k)
    one = np.ones(n)
    ref = (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
           - 2 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3))
    assert hsic1(gram_linear(x), gram_linear(y)) == pytest.approx(ref, rel=1e-12)


def test_self_similarity_is_one(demo):
    x, _ = demo
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x, debiased=True) == pytest.approx(1.0, abs=1e-12)
    assert rbf_cka(x, x, 0.5) == pytest.approx(1.0, abs=1e-12)
    assert minibatch_cka(x, x, 25) == pytest.approx(1.0, abs=1e-12)


def test_invariant_to_orthogonal_maps_and_isotropic_scaling(demo):
    x, y = demo
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((10, 10)))
    base = linear_cka(x, y)
    assert linear_cka(x @ q, y) == pytest.approx(base, abs=1e-12)
    assert linear_cka(7.5 * x, 0.01 * y) == pytest.approx(base, abs=1e-12)
    assert linear_cka(x + 3.0, y - 2.0) == pytest.approx(base, abs=1e-12)  # translation (centring)
    assert linear_cka(x @ q, 3 * y, debiased=True) == pytest.approx(linear_cka(x, y, debiased=True), abs=1e-12)
    assert rbf_cka(x @ q, 4 * y, 0.5) == pytest.approx(rbf_cka(x, y, 0.5), abs=1e-12)  # bandwidth scales too


def test_not_invariant_to_a_general_invertible_map(demo):
    x, y = demo
    a = np.diag(np.geomspace(1, 100, 10)) @ np.random.default_rng(1).standard_normal((10, 10))
    assert abs(np.linalg.det(a)) > 1e-3
    assert abs(linear_cka(x @ a, y) - linear_cka(x, y)) > 0.05


def test_minibatch_over_one_batch_equals_debiased(demo):
    x, y = demo
    deb = linear_cka(x, y, debiased=True)
    assert minibatch_cka(x, y, batch_size=100) == pytest.approx(deb, abs=1e-12)
    assert minibatch_cka(x, y, batch_size=10_000) == pytest.approx(deb, abs=1e-12)
    assert minibatch_cka(x, y, batch_size=10) != pytest.approx(deb, abs=1e-3)  # a different estimator


def test_small_batches_do_not_give_nan(demo):
    x, y = demo
    # 100 = 3 x 33 + 1: the last 1-sample batch joins the one before
    v = minibatch_cka(x, y, batch_size=33)
    assert math.isfinite(v)
    acc = MinibatchCKA(1, 1)
    for lo in range(0, 100, 3):  # batches of 3 and one of 1: HSIC_1 undefined, skipped and counted
        acc.update([torch.as_tensor(x[lo:lo + 3])], [torch.as_tensor(y[lo:lo + 3])])
    assert acc.skipped == 100 and acc.batches == 0
    with pytest.raises(ShapeError, match="at least 4"):
        acc.value()
    acc.update([torch.as_tensor(x[:40])], [torch.as_tensor(y[:40])])
    assert math.isfinite(float(acc.value()[0, 0]))
    with pytest.raises(ConfigError):
        minibatch_cka(x, y, batch_size=3)


def test_biased_cka_is_inflated_with_few_samples_debiased_is_not():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 1000)), rng.standard_normal((50, 1000))
    assert linear_cka(x, y) == pytest.approx(0.95, abs=0.02)
    assert abs(linear_cka(x, y, debiased=True)) < 0.05
    assert few_samples_warning(50, 1000) and "debiased" in few_samples_warning(50, 1000)
    assert few_samples_warning(5000, 1000) is None


def test_unbiased_centring_and_errors():
    g = gram_linear(np.random.default_rng(2).standard_normal((8, 3)))
    u = center_gram(g, unbiased=True)
    assert torch.all(torch.diagonal(u) == 0)
    assert torch.allclose(u, u.T)
    b = center_gram(g)
    assert torch.allclose(b.sum(0), torch.zeros(8, dtype=torch.float64), atol=1e-10)  # H K H has zero means
    with pytest.raises(ShapeError):
        center_gram(g[:3, :3], unbiased=True)
    with pytest.raises(ShapeError):
        linear_cka(np.ones((5, 2)), np.ones((6, 2)))
    with pytest.raises(ConfigError):
        gram_rbf(np.ones((5, 2)), threshold=0)
    assert math.isnan(linear_cka(np.ones((6, 3)), np.random.default_rng(0).standard_normal((6, 3))))


def test_pool_features_shapes_and_choice():
    t = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    assert pool_features(t, "flatten").shape == (2, 48)
    assert torch.equal(pool_features(t, "mean"), t.mean((2, 3)))
    tokens = torch.randn(2, 5, 7)
    assert torch.equal(pool_features(tokens, "mean"), tokens.mean(1))
    with pytest.raises(ConfigError, match="flatten"):
        pool_features(t, "max")
