"""Dataset Quantization: the GraphCut gain and greedy bins against an independent loop, bins partition a class,
uniform bin sampling, patch dropping, seeding and bad input."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from kdlab.condense import condense
from kdlab.condense.distill import Condensation
from kdlab.condense.quantization import (
    drop_patches,
    gradcam,
    gradient_similarity,
    graphcut_gains,
    quantize_bins,
    sample_bins,
    similarity,
)
from kdlab.errors import ConfigError
from kdlab.models import create
from tests.condense.conftest import SMALL_NET

FAST = {"model_params": SMALL_NET, "reference_epochs": 1}


def test_graphcut_gain_is_the_formula_on_a_hand_case():
    s = torch.tensor([[1.0, 0.5, 0.2], [0.5, 1.0, 0.9], [0.2, 0.9, 1.0]], dtype=torch.float64)
    chosen = torch.tensor([0])
    # lam * column sums over the pool (1.7, 2.4, 2.1) minus twice the similarity to the chosen image 0
    assert graphcut_gains(s, chosen, 1.0).tolist() == pytest.approx([1.7 - 2.0, 2.4 - 1.0, 2.1 - 0.4])
    assert graphcut_gains(s, chosen, 0.5).tolist() == pytest.approx([0.85 - 2.0, 1.2 - 1.0, 1.05 - 0.4])
    assert graphcut_gains(s, torch.tensor([0, 2]), 1.0).tolist() == pytest.approx([1.7 - 2.4, 2.4 - 2.8, 2.1 - 2.4])
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    near = 0.5 + 0.5 / 2 ** 0.5  # cos 45 degrees, mapped to [0, 1]
    assert similarity(f).flatten().tolist() == pytest.approx([1, 0.5, near, 0.5, 1, near, near, near, 1])


def test_gradient_similarity_is_that_of_the_explicit_gradients():
    g = torch.Generator().manual_seed(0)
    d, h = torch.randn(5, 3, generator=g), torch.randn(5, 4, generator=g)
    explicit = torch.cat([d, (d[:, :, None] * h[:, None, :]).flatten(1)], 1)  # [dL/db, dL/dW] per image
    assert torch.allclose(gradient_similarity(d, h), similarity(explicit), atol=1e-12)


def test_bins_follow_an_independent_greedy_and_partition_the_class():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(23, 4))
    bins = quantize_bins(similarity(torch.from_numpy(f)), 5, lam=1.0)
    # independent loop: cosine mapped to [0, 1]; each bin grows by argmax of lam*sum_U s - 2*sum_S s
    u = f / np.linalg.norm(f, axis=1, keepdims=True)
    s = 0.5 + 0.5 * u @ u.T
    free, expected = list(range(23)), []
    for b in range(5):
        chosen: list[int] = []
        for _ in range(23 // 5 + (b < 23 % 5)):
            gain = {e: sum(s[i, e] for i in free) - 2 * sum(s[j, e] for j in chosen) for e in free if e not in chosen}
            chosen.append(max(gain, key=gain.get))
        expected.append(chosen)
        free = [i for i in free if i not in chosen]
    assert [b.tolist() for b in bins] == expected
    assert [len(b) for b in bins] == [5, 5, 5, 4, 4]
    flat = torch.cat(bins)
    assert sorted(flat.tolist()) == list(range(23))  # disjoint and covering


def test_uniform_sampling_takes_its_share_from_every_bin():
    bins = [torch.arange(0, 5), torch.arange(5, 10), torch.arange(10, 15), torch.arange(15, 19), torch.arange(19, 23)]
    for k in (5, 7, 10):
        picked = sample_bins(bins, k, torch.Generator().manual_seed(k))
        counts = [sum(int(p) in set(b.tolist()) for p in picked) for b in bins]
        assert len(set(picked.tolist())) == k and min(counts) >= 1 and sum(counts) == k
        assert max(counts) - min(counts) <= 1
    assert sorted(sample_bins(bins, 23, torch.Generator()).tolist()) == list(range(23))


def test_ipc_equal_to_the_class_size_selects_the_whole_class(digits_train):
    idx = torch.cat([(digits_train.y == c).nonzero().flatten()[:12] for c in range(10)])
    small = digits_train.subset(idx)
    s = condense(small, method="dq", ipc=12, method_params={"bins": 4, "features": "pixel"})
    for c in range(10):
        mine, real = s.x[s.y == c].flatten(1), small.x[small.y == c].flatten(1)
        d = torch.cdist(mine.double(), real.double())
        assert d.shape == (12, 12) and float(d.min(1).values.max()) < 1e-4 and float(d.min(0).values.max()) < 1e-4


def test_patch_dropping_keeps_the_fraction_and_the_kept_pixels():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 8, 8, generator=g)
    importance = torch.rand(3, 4, 4, generator=g)
    fill = torch.full((1, 2, 8, 8), -7.0)
    out, mask = drop_patches(x, importance, 0.75, 2, fill)
    assert mask.shape == (3, 4, 4) and mask.sum((1, 2)).tolist() == [12, 12, 12]
    for n, i, j in itertools.product(range(3), range(4), range(4)):
        block = out[n, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
        assert torch.equal(block, x[n, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2] if mask[n, i, j] else fill[0, :, :2, :2])
    for n in range(3):  # the kept patches are the most important ones
        assert float(importance[n][mask[n]].min()) > float(importance[n][~mask[n]].max())


def test_importance_without_a_feature_map_is_the_input_saliency():
    torch.manual_seed(0)
    net = create("mlp", 3, (1, 4, 4), depth=0)  # logits = W x + b: the saliency of class c is |W_c|
    x = torch.randn(2, 1, 4, 4)
    c = net(x).argmax(1)
    w = net.head.weight.detach().abs().view(3, 4, 4)[c]
    expected = w.view(2, 2, 2, 2, 2).mean((2, 4))  # 2x2 patches of the 4x4 image
    assert torch.allclose(gradcam(net, x, (2, 2)), expected, atol=1e-6)
    conv = create("convnet", 3, (1, 8, 8), **SMALL_NET)
    cam = gradcam(conv, torch.randn(5, 1, 8, 8), (4, 4))
    assert cam.shape == (5, 4, 4) and (cam >= 0).all()


@pytest.mark.parametrize("fill,extra", [("mean", 0), ("class_mean", 10)])
def test_patch_dropping_counts_the_stored_budget(digits_train, fill, extra):
    s = condense(digits_train, method="dq", ipc=2,
                 method_params={"features": "pixel", "drop_ratio": 0.25, "fill": fill}, **FAST)
    assert s.meta["patches_kept"] == 0.75 and s.meta["stored_images"] == pytest.approx(0.75 * 20 + extra)
    # 4 of the 16 2x2 patches of every image hold the fill: the data mean or the class mean
    real = torch.stack([digits_train.x[digits_train.y == c].mean(0) for c in range(10)])
    target = torch.full_like(s.x, float(digits_train.x.mean())) if fill == "mean" else real[s.y]
    same = (s.x - target).abs().lt(1e-4).reshape(20, 4, 2, 4, 2).all(4).all(2)
    assert (same.sum((1, 2)) >= 4).all()


def test_same_seed_same_set_other_seed_other_set(digits_train):
    a, b, c = (condense(digits_train, method="dq", ipc=3, seed=s, **FAST) for s in (3, 3, 4))
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert torch.equal(a.y, torch.arange(10).repeat_interleave(3))


@pytest.mark.parametrize("params,field", [({"bins": 41}, "bins"), ({"features": "sift"}, "features"),
                                          ({"drop_ratio": 0.2, "patch": 3}, "patch")])
def test_bad_input_fails_before_any_work_naming_the_field(digits_train, monkeypatch, params, field):
    monkeypatch.setattr(Condensation, "reference_net", lambda self: pytest.fail("trained before checking"))
    with pytest.raises(ConfigError, match=f"condense.method_params.{field}"):
        condense(digits_train, method="dq", ipc=2, method_params=params)


def test_bins_cannot_outnumber_images():
    with pytest.raises(ConfigError, match="bins"):
        quantize_bins(similarity(torch.rand(3, 2)), 4, 1.0)


def test_one_bin_is_the_whole_class_and_n_bins_are_singletons():
    sim = similarity(torch.rand(5, 3, generator=torch.Generator().manual_seed(0)))
    (one,) = quantize_bins(sim, 1, 1.0)
    assert sorted(one.tolist()) == [0, 1, 2, 3, 4]
    singles = quantize_bins(sim, 5, 1.0)
    assert [len(b) for b in singles] == [1] * 5 and sorted(torch.cat(singles).tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match=r"bins: 0 bins for 5 images; valid: 1..5"):
        quantize_bins(sim, 0, 1.0)


@pytest.mark.parametrize("keep,kept", [(0.8, 12), (0.29, 4)])
def test_patch_dropping_keeps_the_floor_of_the_share_even_when_it_is_inexact(keep, kept):
    """16 patches: 0.8 keeps floor(12.8) = 12, not 13; 0.29 * 16 = 4.64 keeps 4. And 100 patches at 0.29 (29 in
    exact arithmetic, 28.999999999999996 in floating point) keep 29."""
    x = torch.rand(1, 1, 8, 8)
    _, mask = drop_patches(x, torch.rand(1, 4, 4), keep, 2, torch.zeros(1, 1, 1, 1))
    assert int(mask.sum()) == kept
    _, mask = drop_patches(torch.rand(1, 1, 20, 20), torch.rand(1, 10, 10), 0.29, 2, torch.zeros(1, 1, 1, 1))
    assert int(mask.sum()) == 29
