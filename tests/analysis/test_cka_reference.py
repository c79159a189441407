"""CKA against the formulas of Kornblith et al. (2019) and the unbiased HSIC of Song et al. (2012) / Nguyen et
al. (2021), written out independently in numpy; minibatch accumulation against explicit per-batch sums; the
sample-count limits and argument handling a caller relies on."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from kdlab.analysis.cka import (
    MinibatchCKA,
    center_gram,
    cka,
    cka_matrix,
    few_samples_warning,
    gram_rbf,
    hsic1,
    linear_cka,
    minibatch_cka,
    pool_features,
    rbf_cka,
)
from kdlab.errors import ShapeError

# ------------------------------------------------------------------------------------------ numpy reference


def np_gram_rbf(x: np.ndarray, threshold: float) -> np.ndarray:
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * threshold ** 2 * np.median(d2)))


def np_hsic_biased(k: np.ndarray, l: np.ndarray) -> float:
    n = len(k)
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ h @ l @ h))


def np_hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012), eq. 5."""
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    n, one = len(k), np.ones(len(k))
    return float((np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
                  - 2 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3)))


def np_cka(k: np.ndarray, l: np.ndarray, debiased: bool = False) -> float:
    h = np_hsic_unbiased if debiased else np_hsic_biased
    return h(k, l) / math.sqrt(h(k, k) * h(l, l))


def np_minibatch_cka(x: np.ndarray, y: np.ndarray, bounds: list[tuple[int, int]]) -> float:
    """Nguyen et al. (2021), eq. 3: HSIC_1 summed over the given batches."""
    xy = xx = yy = 0.0
    for lo, hi in bounds:
        k, l = x[lo:hi] @ x[lo:hi].T, y[lo:hi] @ y[lo:hi].T
        xy, xx, yy = xy + np_hsic_unbiased(k, l), xx + np_hsic_unbiased(k, k), yy + np_hsic_unbiased(l, l)
    return xy / math.sqrt(xx * yy)


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((14, 5))
    y = x @ rng.standard_normal((5, 3)) + 0.7 * rng.standard_normal((14, 3))
    return x, y


# ------------------------------------------------------------------------------------------ estimators


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_and_rbf_cka_equal_the_numpy_formulas(xy, debiased):
    x, y = xy
    ref = np_cka(x @ x.T, y @ y.T, debiased)
    assert linear_cka(x, y, debiased) == pytest.approx(ref, rel=1e-10)
    assert cka(x @ x.T, y @ y.T, debiased) == pytest.approx(ref, rel=1e-10)
    for t in (0.6, 1.0):
        ref = np_cka(np_gram_rbf(x, t), np_gram_rbf(y, t), debiased)
        assert rbf_cka(x, y, t, debiased) == pytest.approx(ref, rel=1e-10)
    # the default bandwidth is the median distance itself
    assert rbf_cka(x, y, debiased=debiased) == pytest.approx(np_cka(np_gram_rbf(x, 1.0), np_gram_rbf(y, 1.0),
                                                                    debiased), rel=1e-10)
    np.testing.assert_allclose(gram_rbf(x).numpy(), np_gram_rbf(x, 1.0), rtol=1e-12)


def test_hsic1_and_centring_equal_their_definitions(xy):
    x, y = xy
    k, l = x @ x.T, y @ y.T
    n = len(k)
    assert hsic1(k, l) == pytest.approx(np_hsic_unbiased(k, l), rel=1e-10)
    h = np.eye(n) - np.ones((n, n)) / n
    np.testing.assert_allclose(center_gram(torch.as_tensor(k)).numpy(), h @ k @ h, atol=1e-10)  # default: H K H
    np.testing.assert_allclose(center_gram(k).numpy(), h @ k @ h, atol=1e-10)  # numpy input accepted
    u = center_gram(k, unbiased=True).numpy()  # <U(K), U(L)> / (n (n - 3)) is HSIC_1
    assert float((u * center_gram(l, unbiased=True).numpy()).sum()) / (n * (n - 3)) == pytest.approx(
        np_hsic_unbiased(k, l), rel=1e-10)
    # 4 samples are enough for the unbiased estimator
    k4 = k[:4, :4]
    assert hsic1(k4, k4) == pytest.approx(np_hsic_unbiased(k4, k4), rel=1e-10)


def test_centring_leaves_the_callers_gram_alone_and_checks_shape(xy):
    x, _ = xy
    g = torch.as_tensor(x @ x.T)
    before = g.clone()
    center_gram(g, unbiased=True)
    center_gram(g)
    assert torch.equal(g, before)
    with pytest.raises(ShapeError, match="square"):
        center_gram(torch.ones(3, 5))
    with pytest.raises(ShapeError, match="square"):
        center_gram(torch.ones(5, 3), unbiased=True)


def test_invariant_to_a_permutation_of_samples_and_tiny_scales(xy):
    x, y = xy
    p = np.random.default_rng(3).permutation(len(x))
    for debiased in (False, True):
        base = linear_cka(x, y, debiased)
        assert linear_cka(x[p], y[p], debiased) == pytest.approx(base, rel=1e-10)
        assert rbf_cka(x[p], y[p], 0.8, debiased) == pytest.approx(rbf_cka(x, y, 0.8, debiased), rel=1e-10)
        # a product of squared norms below 1 is still a valid denominator
        assert linear_cka(1e-3 * x, 1e-3 * y, debiased) == pytest.approx(base, rel=1e-8)
    assert minibatch_cka(1e-3 * x, 1e-3 * y, 5) == pytest.approx(minibatch_cka(x, y, 5), rel=1e-8)


def test_sample_count_limits(xy):
    x, y = xy
    # the biased estimators work from 2 samples, the debiased and minibatch ones from 4 (any feature count)
    for f in (linear_cka, rbf_cka):
        assert math.isfinite(f(x[:2], y[:2]))
        with pytest.raises(ShapeError, match="at least 2"):
            f(x[:1], y[:1])
        assert math.isfinite(f(x[:4, :2], y[:4, :2], debiased=True))
        assert math.isfinite(f(x[:5, :2], y[:5, :2], debiased=True))
        with pytest.raises(ShapeError, match="at least 4"):
            f(x[:3], y[:3], debiased=True)
    assert minibatch_cka(x[:5, :2], y[:5, :2], 4) == pytest.approx(linear_cka(x[:5, :2], y[:5, :2], True), rel=1e-10)
    with pytest.raises(ShapeError, match="at least 4"):
        minibatch_cka(x[:3], y[:3])


@pytest.mark.parametrize("f", [linear_cka, rbf_cka, minibatch_cka])
def test_errors_name_the_bad_argument(xy, f):
    x, y = xy
    with pytest.raises(ShapeError, match="^y:"):
        f(x, y[:, 0])
    with pytest.raises(ShapeError, match="^x:"):
        f(x[:, 0], y)


def test_tensors_that_require_grad_are_accepted_and_detached(xy):
    x, y = xy
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.tensor(y, requires_grad=True)
    assert linear_cka(tx, ty) == pytest.approx(linear_cka(x, y), rel=1e-12)
    assert rbf_cka(tx, ty) == pytest.approx(rbf_cka(x, y), rel=1e-12)
    assert minibatch_cka(tx, ty, 5) == pytest.approx(minibatch_cka(x, y, 5), rel=1e-12)


def test_few_samples_warning_only_when_features_outnumber_samples():
    assert few_samples_warning(100, 100) is None
    assert few_samples_warning(100, 101) is not None


def test_pool_flatten_keeps_every_unit_of_tokens_and_maps():
    tokens = torch.randn(2, 5, 7)
    assert torch.equal(pool_features(tokens, "flatten"), tokens.reshape(2, 35))
    assert torch.equal(pool_features(tokens), tokens.reshape(2, 35))
    maps = torch.randn(2, 3, 4, 5)
    assert torch.equal(pool_features(maps), maps.reshape(2, 60))
    assert torch.equal(pool_features(maps, "mean"), maps.mean((2, 3)))


# ------------------------------------------------------------------------------------------ minibatch


def test_accumulator_holds_summed_hsic1(xy):
    x, y = xy
    acc = MinibatchCKA(1, 1)
    bounds = [(0, 4), (4, 9), (9, 14)]  # batches of 4, 5 and 5: 4 samples are enough
    for lo, hi in bounds:
        acc.update([torch.as_tensor(x[lo:hi])], [torch.as_tensor(y[lo:hi])])
    assert acc.batches == 3 and acc.samples == 14 and acc.skipped == 0
    sums = [sum(np_hsic_unbiased(a[lo:hi] @ a[lo:hi].T, b[lo:hi] @ b[lo:hi].T) for lo, hi in bounds)
            for a, b in ((x, y), (x, x), (y, y))]
    assert float(acc.xy[0, 0]) == pytest.approx(sums[0], rel=1e-10)
    assert float(acc.xx[0]) == pytest.approx(sums[1], rel=1e-10)
    assert float(acc.yy[0]) == pytest.approx(sums[2], rel=1e-10)
    assert float(acc.value()[0, 0]) == pytest.approx(np_minibatch_cka(x, y, bounds), rel=1e-10)
    with pytest.raises(ShapeError, match="same batch"):
        acc.update([torch.as_tensor(x[:8])], [torch.as_tensor(y[:6])])


def test_constant_features_give_nan():
    y = np.random.default_rng(0).standard_normal((8, 3))
    assert math.isnan(minibatch_cka(np.ones((8, 3)), y, 4))
    assert math.isnan(linear_cka(np.ones((8, 3)), y, True))


@pytest.mark.parametrize(("n", "bs", "bounds"), [
    (10, 4, [(0, 4), (4, 10)]),  # a last batch of 2 joins the one before
    (12, 4, [(0, 4), (4, 8), (8, 12)]),  # a last batch of exactly 4 stays
    (14, 4, [(0, 4), (4, 8), (8, 14)]),
    (14, 5, [(0, 5), (5, 10), (10, 14)]),
])
def test_minibatch_cka_batches_against_explicit_bounds(xy, n, bs, bounds):
    x, y = xy
    assert minibatch_cka(x[:n], y[:n], bs) == pytest.approx(np_minibatch_cka(x[:n], y[:n], bounds), rel=1e-10)


def test_minibatch_default_batch_is_256():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 3))
    y = x + rng.standard_normal((300, 3))
    ref = np_minibatch_cka(x, y, [(0, 256), (256, 300)])
    assert minibatch_cka(x, y) == pytest.approx(ref, rel=1e-10)


# ------------------------------------------------------------------------------------------ cka_matrix


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))


def _feats(net, x):
    with torch.no_grad():
        h0 = net[0](x)
        return {"0": h0, "1": net[1](h0), "2": net(x)}


def test_cka_matrix_tensor_data_and_default_batch(mlp):
    x = torch.randn(300, 4, generator=torch.Generator().manual_seed(1))
    df = cka_matrix(mlp, mlp, x, ["0"], ["2"])  # one model, distinct layer lists: both are tapped
    assert df.attrs["batch_size"] == 256 and df.attrs["batches"] == 2 and df.attrs["n_samples"] == 300
    f = {k: v.double().numpy() for k, v in _feats(mlp, x).items()}
    assert float(df.iloc[0, 0]) == pytest.approx(np_minibatch_cka(f["0"], f["2"], [(0, 256), (256, 300)]),
                                                 rel=1e-6)
    df = cka_matrix(mlp, mlp, x[:14], ["2"], ["0", "1"], batch_size=4)
    assert df.attrs["n_samples"] == 12 and df.attrs["batches"] == 3 and df.attrs["skipped"] == 2
    f = {k: v.double().numpy() for k, v in _feats(mlp, x[:14]).items()}
    for b in ("0", "1"):
        assert float(df.loc["2", b]) == pytest.approx(
            np_minibatch_cka(f["2"], f[b], [(0, 4), (4, 8), (8, 12)]), rel=1e-6)


def test_cka_matrix_max_samples_counts_skipped_batches(mlp):
    g = torch.Generator().manual_seed(2)
    batches = [torch.randn(3, 4, generator=g), torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)]
    calls = []
    df = cka_matrix(mlp, mlp, iter(batches), ["0"], ["2"], max_samples=10,
                    progress=lambda i, total, msg: calls.append((i, total, msg)))
    assert df.attrs["skipped"] == 3 and df.attrs["n_samples"] == 7  # 3 skipped + 7 used = max_samples
    assert calls == [(1, 0, "batch 1/?"), (2, 0, "batch 2/?")]  # unknown length: total 0; no third batch
    f = {k: v.double().numpy() for k, v in _feats(mlp, batches[1][:7]).items()}
    assert float(df.iloc[0, 0]) == pytest.approx(np_minibatch_cka(f["0"], f["2"], [(0, 7)]), rel=1e-6)
