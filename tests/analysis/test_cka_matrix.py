"""cka_matrix: one streaming pass equals the pairwise estimator; taps hygiene; float32 precision."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from kdlab.analysis.cka import MinibatchCKA, cka_matrix, matched_diagonal, minibatch_cka
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
    df = cka_matrix(cnn, mlp, digits, la, lb, batch_size=100)
    assert list(df.index) == la and list(df.columns) == lb
    assert df.attrs["n_samples"] == 300 and df.attrs["batches"] == 3 and df.attrs["pool"] == "flatten"
    fa, fb = _features(cnn, digits.x, la), _features(mlp, digits.x, lb)
    for a in la:
        for b in lb:
            assert df.loc[a, b] == pytest.approx(minibatch_cka(fa[a], fb[b], batch_size=100), abs=1e-10)
    assert ((df.values > -1e-9) & (df.values < 1 + 1e-9)).all()


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
    x, y = x.float().double(), y.float().double()  # the same (float32-representable) inputs for both
    for dt in (torch.float32, torch.float64):
        acc = MinibatchCKA(2, 2, dtype=dt)
        for lo in range(0, 250, 50):
            acc.update([x[lo:lo + 50].to(dt), y[lo:lo + 50].to(dt)], [x[lo:lo + 50].to(dt), y[lo:lo + 50].to(dt)])
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
