"""Matching losses against their formulas: DM mean distance, DataDAM attention, DC layer-wise distance."""
from __future__ import annotations

import math

import pytest
import torch

from kdlab.condense.matching import (
    attention,
    channels_last_copy,
    class_means,
    dam_loss,
    dm_loss,
    embed,
    gradient_distance,
    per_class_means,
    stage_paths,
    stages_and_embedding,
)
from kdlab.errors import ConfigError
from kdlab.models import create


def test_dm_loss_is_the_squared_distance_of_class_means():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(3, 5, 4, generator=g)  # 3 classes x 5 samples x 4 dims
    syn = torch.randn(3, 2, 4, generator=g)
    expected = sum(float(((real[c].mean(0) - syn[c].mean(0)) ** 2).sum()) for c in range(3))
    got = dm_loss(class_means(real.flatten(0, 1), 3), syn.flatten(0, 1), 3)
    assert math.isclose(float(got), expected, rel_tol=1e-6)
    same = dm_loss(class_means(real.flatten(0, 1), 3), real.flatten(0, 1), 3)
    assert float(same) < 1e-10


def test_attention_is_normalised_sum_of_powers():
    f = torch.tensor([[[[1.0, -2.0]], [[3.0, 0.0]]]])  # (1, 2 channels, 1, 2)
    a = attention(f, 2)
    raw = torch.tensor([1 + 9, 4 + 0.0])
    assert torch.allclose(a, (raw / raw.norm()).view(1, 2))
    assert torch.allclose(attention(3 * f, 4), attention(f, 4))  # scale-free


def test_dam_loss_adds_weighted_attention_to_dm():
    g = torch.Generator().manual_seed(1)
    feats_r, feats_s = torch.rand(4, 3, 2, 2, generator=g), torch.rand(2, 3, 2, 2, generator=g)
    emb_r, emb_s = torch.randn(4, 5, generator=g), torch.randn(2, 5, generator=g)
    real = ([class_means(attention(feats_r, 4), 2)], class_means(emb_r, 2))
    syn = ([attention(feats_s, 4)], emb_s)
    att = float(((class_means(attention(feats_r, 4), 2) - class_means(attention(feats_s, 4), 2)) ** 2).sum())
    dm = float(dm_loss(class_means(emb_r, 2), emb_s, 2))
    assert math.isclose(float(dam_loss(real, syn, 2, 0.5)), 0.5 * att + dm, rel_tol=1e-6)


def test_gradient_distance_limits_and_bias_ignored():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(6, 3, 3, 3, generator=g)
    lin = torch.randn(4, 10, generator=g)
    bias = torch.randn(6, generator=g)
    assert float(gradient_distance([w, lin, bias], [w, lin, -bias])) < 1e-5  # equal (bias ignored)
    assert math.isclose(float(gradient_distance([w, lin], [-w, -lin])), 2 * (6 + 4), rel_tol=1e-5)  # opposite
    assert float(gradient_distance([w], [5 * w])) < 1e-5  # scale invariant per output unit
    ortho = gradient_distance([torch.tensor([[1.0, 0.0]])], [torch.tensor([[0.0, 1.0]])])
    assert math.isclose(float(ortho), 1.0, rel_tol=1e-6)


def test_per_class_means_in_channels_last_blocks_equal_the_class_means_of_one_pass():
    """The fast real side of DM/DataDAM (class blocks, channels-last copy) computes the same means as one
    contiguous pass, for a tensor and for a nested (maps, embedding) output; InstanceNorm is layout-blind."""
    torch.manual_seed(0)
    net = create("convnet", 3, (1, 28, 28), width=8, depth=3).eval()
    x = torch.rand(3 * 5, 1, 28, 28)
    fast = channels_last_copy(net)
    with torch.no_grad():
        ref = class_means(embed(net, x), 3)
        got = per_class_means(lambda b: embed(fast, b), x, 3)
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
        paths = stage_paths(net)

        def maps(b, model):
            feats, emb = stages_and_embedding(model, b, paths)
            return [attention(f, 4) for f in feats], emb

        ref_maps, ref_emb = maps(x, net)
        got_maps, got_emb = per_class_means(lambda b: maps(b, fast), x, 3)
        assert len(got_maps) == len(ref_maps) == len(paths)
        for g, r in zip(got_maps, ref_maps, strict=True):
            torch.testing.assert_close(g, class_means(r, 3), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got_emb, class_means(ref_emb, 3), rtol=1e-4, atol=1e-5)
        norm = next(m for m in net.modules() if type(m).__name__ == "InstanceNorm")
        h = torch.randn(4, norm.num_channels, 7, 7)
        torch.testing.assert_close(norm(h.contiguous(memory_format=torch.channels_last)), norm(h))


class _Tapped(torch.nn.Module):
    """No embed(): the embedding comes from its declared tap; an in-place ReLU follows the stage."""

    def __init__(self, declare: bool = True):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)
        self.act = torch.nn.ReLU(inplace=True)
        self.head = torch.nn.Linear(3 * 4 * 4, 2)
        if declare:
            self.kdlab_taps = {"stages": ["conv"], "embedding": "act"}

    def forward(self, x):
        return self.head(self.act(self.conv(x)).flatten(1))


def test_embed_from_the_declared_tap_and_stages_before_in_place_ops():
    torch.manual_seed(0)
    net, x = _Tapped(), torch.randn(5, 2, 4, 4)
    conv = net.conv(x).detach()
    emb = embed(net, x)
    assert emb.shape == (5, 48)
    torch.testing.assert_close(emb, torch.relu(conv).flatten(1))
    assert emb.requires_grad  # the synthetic side's gradient flows through it
    (feats, emb2) = stages_and_embedding(net, x, ["conv"])
    torch.testing.assert_close(feats[0], conv)  # the stage output itself, copied before the in-place ReLU
    with pytest.raises(ConfigError, match="embed"):
        embed(_Tapped(declare=False), x)


def test_per_class_means_layouts_and_a_single_class():
    x4 = torch.randn(6, 2, 3, 3)
    seen = []
    got = per_class_means(lambda b: seen.append(b.is_contiguous(memory_format=torch.channels_last)) or b, x4, 2)
    assert seen == [True, True]
    torch.testing.assert_close(got, class_means(x4, 2))
    x2 = torch.randn(6, 5)  # flat inputs are passed as they are
    torch.testing.assert_close(per_class_means(lambda b: b, x2, 3), class_means(x2, 3))
    one = per_class_means(lambda b: ([b, 2 * b], b), x2, 1)  # one class: a nested output still stacks
    torch.testing.assert_close(one[0][1], 2 * x2.mean(0, keepdim=True))
    torch.testing.assert_close(one[1], x2.mean(0, keepdim=True))


def test_gradient_distance_keeps_the_reference_epsilon():
    """DC's reference: cos = <gr, gs> / (|gr| |gs| + 1e-6), so tiny or zero gradients stay finite."""
    g = torch.full((3, 4), 5e-4)  # each row's squared norm is 1e-6
    assert math.isclose(float(gradient_distance([g], [g])), 3 * (1 - 1e-6 / 2e-6), rel_tol=1e-5)
    assert math.isclose(float(gradient_distance([torch.zeros(3, 4)], [g])), 3.0, rel_tol=1e-6)
