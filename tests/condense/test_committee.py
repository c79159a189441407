"""Committee pieces (BN matching, vote weights, soft labels) against hand computations, and CV-DD end to end."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import kdlab.condense.committee_voting as cv
from kdlab.condense import condense
from kdlab.condense.committee import BNMatching, class_batches, soft_labels, vote_weights
from kdlab.errors import ConfigError, UnknownNameError
from tests.condense.conftest import SMALL_NET

TINY = {"committee": ["convnet", "mlp"], "committee_epochs": 1}
FAST = {"model_params": SMALL_NET, "ipc": 2, "iterations": 2}


def _batch_with(mean: list[float], var: list[float], n: int = 8, hw: int = 4, seed: int = 0) -> torch.Tensor:
    """A batch whose per-channel mean and biased variance are exactly ``mean`` and ``var`` (up to rounding)."""
    z = torch.randn(n, len(mean), hw, hw, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z = (z - z.mean((0, 2, 3), keepdim=True)) / z.var((0, 2, 3), keepdim=True, correction=0).sqrt()
    return (torch.tensor(mean).view(1, -1, 1, 1) + torch.tensor(var).sqrt().view(1, -1, 1, 1) * z).float()


def _two_bn_net() -> nn.Module:
    net = nn.Sequential(nn.BatchNorm2d(3), nn.BatchNorm2d(3)).eval()
    net[0].running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
    net[0].running_var.copy_(torch.tensor([1.0, 4.0, 0.25]))
    return net  # the second layer keeps running mean 0, var 1: what the first one's output has


def test_bn_matching_is_zero_at_the_running_statistics_and_the_l2_sum_elsewhere():
    net = _two_bn_net()
    x = _batch_with([0.5, -1.0, 2.0], [1.0, 4.0, 0.25])
    with torch.no_grad(), BNMatching(net) as bn:
        net(x)
    assert bn.loss(10.0).shape == (1,)
    assert float(bn.loss(10.0)) == pytest.approx(0.0, abs=2e-4)
    # shift channel 0 by 1 and double channel 1's spread: layer 1 sees |1| + |16 - 4| = 13 (times 10, the first
    # layer), layer 2 sees a mean off by ~1 and a variance of ~4 instead of 1: 1 + 3
    y = _batch_with([1.5, -1.0, 2.0], [1.0, 16.0, 0.25])
    with torch.no_grad(), BNMatching(net) as bn:
        net(y)
    assert float(bn.loss(10.0)) == pytest.approx(130 + 4, rel=1e-3)
    assert float(bn.loss(1.0)) == pytest.approx(13 + 4, rel=1e-3)


def test_bn_matching_scores_each_group_on_its_own():
    net = _two_bn_net()
    x = torch.cat([_batch_with([0.5, -1.0, 2.0], [1.0, 4.0, 0.25]), _batch_with([1.5, -1.0, 2.0], [1.0, 16.0, 0.25])])
    with torch.no_grad(), BNMatching(net, groups=2) as bn:
        net(x)
    assert bn.loss(10.0).tolist() == pytest.approx([0.0, 134.0], abs=0.2)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
    with BNMatching(plain, groups=2) as bn:  # no BatchNorm: no term
        plain(x[:4])
    assert bn.loss(10.0).tolist() == [0.0, 0.0]


def test_vote_weights_follow_softmax_of_accuracy_over_temperature():
    acc = [0.9, 0.8, 0.95]
    e = [math.exp(100 * a / 5) for a in acc]
    assert vote_weights(acc, 5.0).tolist() == pytest.approx([v / sum(e) for v in e], rel=1e-12)
    assert vote_weights(acc, 5.0).argsort().tolist() == [1, 0, 2]  # the better member votes louder
    assert vote_weights(acc, 1e9).tolist() == pytest.approx([1 / 3] * 3)
    assert vote_weights(acc, 0.01).tolist() == pytest.approx([0.0, 0.0, 1.0])


def test_soft_labels_are_the_weighted_average_of_the_members_softmax():
    a, b = nn.Linear(2, 3), nn.Linear(2, 3)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        a.bias.zero_()
        b.weight.copy_(torch.tensor([[0.0, 2.0], [-1.0, 0.0], [0.0, 0.0]]))
        b.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0]])

    def softmax(z):
        e = [math.exp(v) for v in z]
        return [v / sum(e) for v in e]

    expect = []
    for x0, x1 in x.tolist():
        pa = softmax([x0, x1, x0 + x1])
        pb = softmax([2 * x1, -x0, 1.0])
        expect.append([0.25 * u + 0.75 * v for u, v in zip(pa, pb, strict=True)])
    got = soft_labels([a, b], [1.0, 3.0], x)  # weights are normalised: 1/4, 3/4
    assert got.tolist()[0] == pytest.approx(expect[0], abs=1e-6)
    assert got.tolist()[1] == pytest.approx(expect[1], abs=1e-6)
    assert got.sum(1).tolist() == pytest.approx([1.0, 1.0])


def test_batch_specific_soft_labels_normalise_with_the_batch_and_leave_the_member_alone():
    net = nn.Sequential(nn.BatchNorm1d(2, eps=1e-12), nn.Linear(2, 2)).eval()
    net[0].running_mean.copy_(torch.tensor([5.0, -5.0]))
    net[0].running_var.copy_(torch.tensor([9.0, 9.0]))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        net[1].bias.zero_()
    x = torch.tensor([[0.0, 1.0], [2.0, -1.0]])  # batch mean (1, 0), biased variance (1, 1) -> z = +-1
    got = soft_labels([net], [1.0], x, batch_specific=True)
    p = 1 / (1 + math.exp(-2.0))  # softmax of (-1, 1) and of (1, -1)
    assert got.tolist()[0] == pytest.approx([1 - p, p], abs=1e-6)
    assert got.tolist()[1] == pytest.approx([p, 1 - p], abs=1e-6)
    assert net[0].running_mean.tolist() == [5.0, -5.0] and not net.training
    plain = soft_labels([net], [1.0], x)  # running statistics: (x - 5) / 3 and (x + 5) / 3
    z = [[(0 - 5) / 3, (1 + 5) / 3], [(2 - 5) / 3, (-1 + 5) / 3]]
    assert plain.tolist()[0][1] == pytest.approx(1 / (1 + math.exp(z[0][0] - z[0][1])), abs=1e-6)


def test_class_batches_take_one_image_of_every_class_per_batch():
    x = torch.arange(6.0).view(6, 1, 1, 1)  # class-major: class 0 -> 0, 1, 2; class 1 -> 3, 4, 5
    assert class_batches(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_voter_subsets_cycle_through_the_combinations_in_order():
    assert cv.voter_subsets(3, 2, 5) == [(0, 1), (0, 2), (1, 2), (0, 1), (0, 2)]
    assert cv.voter_subsets(3, 3, 2) == [(0, 1, 2), (0, 1, 2)]


def test_cv_dd_same_seed_same_set_and_committee_soft_labels(digits_train):
    a = condense(digits_train, method="cv_dd", seed=1, method_params=TINY, **FAST)
    b = condense(digits_train, method="cv_dd", seed=1, method_params=TINY, **FAST)
    c = condense(digits_train, method="cv_dd", seed=2, method_params=TINY, **FAST)
    assert torch.equal(a.x, b.x) and torch.equal(a.soft, b.soft)
    assert not torch.equal(a.x, c.x)
    assert a.x.shape == (20, 1, 8, 8) and a.y.tolist() == torch.arange(10).repeat_interleave(2).tolist()
    assert a.soft.sum(1).tolist() == pytest.approx([1.0] * 20, abs=1e-5)
    acc = a.meta["committee_val_accuracy"]
    e = [math.exp(100 * v / 5) for v in acc]
    assert a.meta["vote_weights"] == pytest.approx([v / sum(e) for v in e])
    assert a.meta["stored_images"] == 20


def test_cv_dd_starts_from_real_images_of_each_class_and_moves_them(digits_train):
    start = condense(digits_train, method="cv_dd", method_params=TINY, **{**FAST, "iterations": 0})
    moved = condense(digits_train, method="cv_dd", method_params=TINY, **FAST)
    d = torch.cdist(start.x.flatten(1), digits_train.x.flatten(1))
    nearest = d.min(1)
    assert float(nearest.values.max()) < 1e-4
    assert torch.equal(digits_train.y[nearest.indices], start.y)
    assert not torch.equal(start.x, moved.x)


def test_cv_dd_bad_committee_fails_before_any_work(digits_train, monkeypatch):
    monkeypatch.setattr(cv, "train_committee", lambda *a, **k: pytest.fail("trained before checking"))
    with pytest.raises(ConfigError, match="condense.method_params.voters"):
        condense(digits_train, method="cv_dd", method_params={**TINY, "voters": 3}, **FAST)
    with pytest.raises(UnknownNameError, match="condense.method_params.committee"):
        condense(digits_train, method="cv_dd", method_params={**TINY, "committee": ["convnet", "nope"]}, **FAST)
    with pytest.raises(ConfigError, match="condense.method_params.committee"):
        condense(digits_train, method="cv_dd", method_params={**TINY, "committee": []}, **FAST)
