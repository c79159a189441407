"""cka_matrix: one streaming pass equals the pairwise estimator; taps hygiene; float32 precision."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from kdlab.analysis.cka import (
    MinibatchCKA,
    _narrow,
    cka_matrix,
    gram_linear,
    hsic1,
    matched_diagonal,
    minibatch_cka,
)
from kdlab.analysis.gram import LayerBatch, gram_upper
from kdlab.data import load
from kdlab.errors import ConfigError, UnknownNameError
from kdlab.models import create


@pytest.fixture(scope="module")
def digits():
    return load("digits", split="train", n_train=300)


@pytest.fixture(scope="module")
def models(digits):
    torch.manual_seed(0)
    cnn = create("convnet", 10, digits.in_shape, width=8, depth=2)
    mlp = create("mlp", 10, digits.in_shape, width=32, depth=2)
    return cnn, mlp


def _features(model, x, layers):
    out = {}
    hooks = [dict(model.named_modules())[p].register_forward_hook(
        lambda _m, _i, o, p=p: out.__setitem__(p, o.detach().clone().flatten(1).double())) for p in layers]
    with torch.no_grad():
        model.eval()
        model(x)
    for h in hooks:
        h.remove()
    return out


def test_streaming_grid_equals_pairwise_minibatch_cka(digits, models):
    cnn, mlp = models
    la, lb = ["features.0", "features.1", "classifier"], ["blocks.0", "blocks.1", "head"]
    df = cka_matrix(cnn, mlp, digits, la, lb, batch_size=100, dtype=torch.float64)
    assert list(df.index) == la and list(df.columns) == lb
    assert df.attrs["n_samples"] == 300 and df.attrs["batches"] == 3 and df.attrs["pool"] == "flatten"
    fa, fb = _features(cnn, digits.x, la), _features(mlp, digits.x, lb)
    for a in la:
        for b in lb:
            assert df.loc[a, b] == pytest.approx(minibatch_cka(fa[a], fb[b], batch_size=100), abs=1e-10)
    assert ((df.values > -1e-9) & (df.values < 1 + 1e-9)).all()
    default = cka_matrix(cnn, mlp, digits, la, lb, batch_size=100)  # float32 products, float64 sums
    assert 0 < np.abs(default.values - df.values).max() < 1e-6


@pytest.mark.parametrize("dims_a, dims_b", [([3, 40], [7, 12]), ([7, 12], [3, 40]), ([5, 9], [2, 11]), ([2, 3], [1, 4]),
                                            ([25, 40], [30, 21]), ([40, 2, 21], [1, 20, 19, 33])])
def test_wide_and_narrow_layers_give_the_gram_form_values(dims_a, dims_b):
    """Layers as wide as the batch (Gram form), narrower ones (feature-space form) and every mix of the two give
    the U-centred Gram estimator's values (batches of 20: wide means 20 or more features)."""
    torch.manual_seed(0)
    base = torch.randn(60, 8, dtype=torch.float64)  # shared signal, so the pairs are far from 0
    feats = [base @ torch.randn(8, d, dtype=torch.float64) + 0.5 * torch.randn(60, d, dtype=torch.float64) + 3.0
             for d in dims_a + dims_b]
    fa, fb = feats[:len(dims_a)], feats[len(dims_a):]
    acc = MinibatchCKA(len(fa), len(fb))
    xy = torch.zeros(len(fa), len(fb), dtype=torch.float64)
    xx, yy = torch.zeros(len(fa), dtype=torch.float64), torch.zeros(len(fb), dtype=torch.float64)
    for lo in range(0, 60, 20):
        acc.update([f[lo:lo + 20] for f in fa], [f[lo:lo + 20] for f in fb])
        ga = [gram_linear(f[lo:lo + 20]) for f in fa]
        gb = [gram_linear(f[lo:lo + 20]) for f in fb]
        xy += torch.tensor([[hsic1(g, h) for h in gb] for g in ga], dtype=torch.float64)
        xx += torch.tensor([hsic1(g, g) for g in ga], dtype=torch.float64)
        yy += torch.tensor([hsic1(h, h) for h in gb], dtype=torch.float64)
    assert torch.allclose(acc.xy, xy, rtol=1e-10, atol=0) and torch.allclose(acc.xx, xx, rtol=1e-10, atol=0)
    assert torch.allclose(acc.yy, yy, rtol=1e-10, atol=0)
    assert torch.allclose(acc.value(), xy / (xx[:, None] * yy[None, :]).sqrt(), rtol=1e-10, atol=0)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gram_upper_is_the_strict_upper_triangle_of_the_product(dtype, threads):
    f = torch.randn(37, 300, dtype=dtype)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)  # one thread: BLAS syrk; more: a matrix product
        g = gram_upper(f)
    finally:
        torch.set_num_threads(before)
    assert g.dtype == dtype and g.shape == (37, 37)
    want = (f.double() @ f.double().T).triu(1)
    assert torch.allclose(g.double(), want, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-3)
    assert not g.tril().any()  # diagonal and lower triangle zero
    wide, narrow = LayerBatch.of(f.T[:40].T.reshape(37, 4, 10), dtype), LayerBatch.of(f[:, :5], dtype)
    assert wide.feats is None and wide.d == 40 and narrow.upper is None and narrow.feats.shape == (37, 5)
    assert LayerBatch.of(f[:, :37], dtype).feats is None  # as wide as the batch: the Gram form
    full = gram_upper(narrow.with_gram().feats)
    assert torch.equal(narrow.upper, full) and torch.allclose(narrow.sums, (full + full.T).sum(1).double())


def test_in_place_relu_copy_gives_one_and_hooks_are_removed(digits):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(384, 10))
    twin = copy.deepcopy(net).eval()
    df = cka_matrix(net, twin, digits, ["0", "1"], ["0", "1"], batch_size=64)
    assert df.loc["0", "0"] == pytest.approx(1.0, abs=1e-9)  # conv output copied before the in-place ReLU
    assert df.loc["1", "1"] == pytest.approx(1.0, abs=1e-9)
    assert df.loc["0", "1"] < 0.999  # had the conv tap been overwritten by the ReLU this would be 1
    assert net.training and not twin.training  # modes restored
    assert all(not m._forward_hooks for m in [*net.modules(), *twin.modules()])
    same = cka_matrix(net, net, digits, ["0", "1"], ["0", "1"], batch_size=64)  # one forward per batch
    assert np.allclose(same.values, df.values, atol=1e-9)


def test_unknown_layer_fails_and_bad_arguments(digits, models):
    cnn, mlp = models
    with pytest.raises(UnknownNameError, match="features.1"):
        cka_matrix(cnn, mlp, digits, ["features.9"], ["head"])
    with pytest.raises(UnknownNameError):
        cka_matrix(cnn, mlp, digits, ["features.0"], ["blocks.7"])
    with pytest.raises(ConfigError, match="pool"):
        cka_matrix(cnn, mlp, digits, ["features.0"], ["head"], pool="max")
    with pytest.raises(ConfigError, match="batch_size"):
        cka_matrix(cnn, mlp, digits, ["features.0"], ["head"], batch_size=2)
    assert all(not m._forward_hooks for m in [*cnn.modules(), *mlp.modules()])


def test_float32_centred_matches_float64_where_uncentred_float32_fails():
    torch.manual_seed(0)
    x = 1000.0 + 0.01 * torch.randn(250, 10, dtype=torch.float64)  # a near-constant layer (e.g. logits)
    y = x @ torch.randn(10, 10, dtype=torch.float64) + 0.1 * torch.randn(250, 10, dtype=torch.float64)
    w = 500.0 + x @ torch.randn(10, 80, dtype=torch.float64)  # wider than a batch of 50: its Gram is formed
    # HSIC_1 from the Gram of uncentred float32 features (the trace formula torch-cka uses): the float32
    # Gram entries (~1e7) cannot hold the variation (~1e-1), so the estimate loses all its signal
    k = (x.float() @ x.float().T).double()
    k.fill_diagonal_(0)
    n, one = 250, torch.ones(250, dtype=torch.float64)
    naive = (torch.trace(k @ k) + (one @ k @ one) ** 2 / ((n - 1) * (n - 2)) - 2 / (n - 2) * (one @ k @ k @ one))
    exact = MinibatchCKA(1, 1)
    exact.update([x], [x])
    assert abs(float(naive) / (n * (n - 3)) - float(exact.xx)) > 0.5 * float(exact.xx)  # all signal lost
    grids = {}
    x, y, w = x.float().double(), y.float().double(), w.float().double()  # float32-representable inputs for both
    for dt in (torch.float32, torch.float64):
        acc = MinibatchCKA(3, 3, dtype=dt)
        for lo in range(0, 250, 50):
            batch = [f[lo:lo + 50].to(dt) for f in (x, y, w)]
            acc.update(batch, batch)
        grids[dt] = acc.value()
    assert torch.isfinite(grids[torch.float32]).all()
    assert (grids[torch.float32] - grids[torch.float64]).abs().max() < 1e-6


def test_pool_mean_progress_and_matched_diagonal(digits, models):
    cnn, mlp = models
    seen = []
    df = cka_matrix(cnn, mlp, digits, ["features.0", "features.1"], ["blocks.0", "blocks.1", "head"],
                    batch_size=128, pool="mean", max_samples=200, progress=lambda d, t, m: seen.append((d, t)))
    assert df.attrs["n_samples"] == 200 and df.attrs["pool"] == "mean"
    assert seen[-1] == (2, 3)  # 200 samples of 300 in batches of 128: 2 batches
    diag = matched_diagonal(df)
    assert list(diag.index) == ["features.0 ~ blocks.1", "features.1 ~ head"]
    assert diag.iloc[0] == df.loc["features.0", "blocks.1"]
    assert all(math.isfinite(v) for v in diag)


def test_gram_upper_without_blas_syrk_is_the_same_triangle(monkeypatch):
    """Without scipy's BLAS the triangle comes from a matrix product: same values."""
    import kdlab.analysis.gram as gram

    f = torch.randn(40, 70, dtype=torch.float64)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        want = gram_upper(f)
        monkeypatch.setattr(gram, "_routine", lambda dtype: None)
        assert torch.allclose(gram_upper(f), want, rtol=1e-12, atol=1e-12)
    finally:
        torch.set_num_threads(before)


def test_grid_does_not_depend_on_the_thread_count(digits, models):
    """One thread forms the Grams by BLAS syrk, two by a matrix product: the same grid (up to the float32
    rounding of the products and of forward passes run in one or two threads)."""
    cnn, mlp = models
    la, lb = ["features.0", "features.1", "classifier"], ["blocks.0", "head"]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cka_matrix(cnn, mlp, digits, la, lb, batch_size=100)
        torch.set_num_threads(2)
        two = cka_matrix(cnn, mlp, digits, la, lb, batch_size=100)
    finally:
        torch.set_num_threads(threads)
    assert np.abs(one.values - two.values).max() < 1e-7


@pytest.mark.parametrize("dims_a, dims_b, want_a, want_b", [
    ([10], [10], [True], [True]),  # logits x logits: N Da Db = 25,000 against a Gram's N^2 D / 2 + N^2
    ([3136, 10], [3920, 10], [False, True], [False, True]),
    ([256, 128, 64, 10], [256, 128, 64, 10], [False] * 4, [False] * 4),  # 52M against 30M: Grams are cheaper
    ([250, 9], [10], [False, True], [True]),  # D == N is wide
    ([125], [125], [True], [True]),  # 2 N Da Db = 7.81M against N^2 (D / 2 + D / 2 + 1) = 7.88M: just wins
    ([126], [126], [False], [False]),  # 7.938M against 7.9375M: just loses
    ([125], [127], [False], [False]),  # a tie (7.9375M both ways): the Gram form
    ([10], [250, 9], [True], [False, True]),
    ([250, 120], [125], [False, True], [True]),  # a wide layer's width does not count in the narrow sums
    ([125], [250, 120], [True], [False, True]),
])
def test_narrow_layers_are_those_the_cost_model_picks(dims_a, dims_b, want_a, want_b):
    na, nb = _narrow(dims_a, dims_b, 250)
    assert na.tolist() == want_a and nb.tolist() == want_b


def test_gram_upper_takes_blas_syrk_on_one_cpu_thread(monkeypatch):
    import kdlab.analysis.gram as gram

    seen = []
    real = gram._routine
    monkeypatch.setattr(gram, "_routine", lambda dtype: seen.append((torch.get_num_threads(), dtype)) or real(dtype))
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for dtype in (torch.float32, torch.float64, torch.bfloat16):
                f = torch.randn(9, 5).to(dtype)
                assert torch.allclose(gram_upper(f).double(), (f.double() @ f.double().T).triu(1), atol=0.1)
    finally:
        torch.set_num_threads(before)
    assert seen == [(1, torch.float32)] * 2 + [(1, torch.float64)] * 2  # one thread, float32/64 only
    assert real(torch.float32) is not None and real(torch.float64) is not None


def test_on_batch_sees_the_outputs_and_kept_layers_of_the_same_passes(digits, models):
    cnn, mlp = models
    seen = []
    df = cka_matrix(cnn, mlp, digits, ["features.0"], ["head"], batch_size=128, max_samples=200,
                    on_batch=lambda *args: seen.append(args), keep_a=["features.1"], keep_b=["blocks.0"])
    assert [len(s[0]) for s in seen] == [128, 72] and df.attrs["n_samples"] == 200
    x = digits.x[:200]
    want_a, want_b = _features(cnn, x, ["features.1"]), _features(mlp, x, ["blocks.0"])
    with torch.no_grad():
        out_a, out_b = cnn.eval()(x), mlp.eval()(x)
    assert torch.allclose(torch.cat([s[0] for s in seen]), out_a, atol=1e-5)
    assert torch.allclose(torch.cat([s[1] for s in seen]), out_b, atol=1e-5)
    assert torch.allclose(torch.cat([s[2]["features.1"] for s in seen]).flatten(1).double(), want_a["features.1"],
                          atol=1e-5)
    assert torch.allclose(torch.cat([s[3]["blocks.0"] for s in seen]).flatten(1).double(), want_b["blocks.0"],
                          atol=1e-5)
    seen.clear()  # one model: one forward, both sides' kept layers from it
    cka_matrix(cnn, cnn, digits, ["features.0"], ["classifier"], batch_size=128, max_samples=128,
               on_batch=lambda *args: seen.append(args), keep_a=["features.0"], keep_b=["features.1"])
    (o_a, o_b, k_a, k_b), = seen
    assert o_a is o_b and set(k_a) == {"features.0"} and set(k_b) == {"features.1"}


def test_one_layer_with_itself_and_rows_refilled_batch_after_batch():
    torch.manual_seed(0)
    x = torch.randn(60, 30, dtype=torch.float64)
    acc = MinibatchCKA(1, 1)
    acc.update([x[:20]])  # B is A
    rows = acc._buffers["a"]
    acc.update([x[20:40]])
    assert acc._buffers["a"] is rows  # same shapes: the float64 rows of the last batch are refilled
    acc.update([x[40:59]])
    assert acc._buffers["a"] is not rows and acc._buffers["a"].shape == (1, 19 * 19)  # a smaller batch: new rows
    assert acc.value()[0, 0] == pytest.approx(1.0, abs=1e-12) and acc.samples == 59
