"""kdlab.diffusion.metrics and .judge: each metric against its formula or a known value."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdlab.diffusion import judge as J
from kdlab.diffusion import metrics as M

pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _eight_gaussians(n_per: int, std: float = 0.05, modes=range(8), seed: int = 0):
    """Points around the 8 unit-circle modes (radius 2) and their mode labels."""
    g = _gen(seed)
    ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    centers = 2.0 * torch.stack([ang.cos(), ang.sin()], 1)
    labels = torch.tensor(list(modes)).repeat_interleave(n_per)
    x = centers[labels] + std * torch.randn(len(labels), 2, generator=g, dtype=torch.float64)
    return x, labels, centers


# ---------------------------------------------------------------------------------------------------- Fréchet
def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    g = _gen(1)
    n = 20000
    s1 = torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64)  # variances
    s2 = torch.tensor([2.25, 1.0, 0.25], dtype=torch.float64)
    mu2 = torch.tensor([1.0, -0.5, 0.0], dtype=torch.float64)
    a = torch.randn(n, 3, generator=g, dtype=torch.float64) * s1.sqrt()
    b = torch.randn(n, 3, generator=g, dtype=torch.float64) * s2.sqrt() + mu2
    expected = float(mu2 @ mu2 + (s1 + s2 - 2 * (s1 * s2).sqrt()).sum())  # 1.25 + 1.25 = 2.5
    assert expected == pytest.approx(2.5)
    assert M.frechet_distance(a, b) == pytest.approx(expected, abs=0.12)
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert M.frechet_distance(a.numpy(), b.numpy()) == M.frechet_distance(a, b)  # numpy in, same number


def test_frechet_distance_handles_singular_covariances():
    """More features than samples: rank-deficient covariances still give a finite, consistent number."""
    g = _gen(2)
    a = torch.randn(30, 50, generator=g, dtype=torch.float64)
    b = torch.randn(30, 50, generator=g, dtype=torch.float64) + 0.5
    fd = M.frechet_distance(a, b)
    s1, s2 = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    diff = (a.mean(0) - b.mean(0)).numpy()
    ref = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * M._trace_sqrt_product_eigh(s1, s2)
    assert math.isfinite(fd) and fd == pytest.approx(ref, rel=1e-4)
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-4)


# ---------------------------------------------------------------------------------------------------------- SWD
def test_sliced_wasserstein_zero_shift_and_order():
    g = _gen(3)
    a = torch.randn(500, 2, generator=g, dtype=torch.float64)
    assert M.sliced_wasserstein(a, a) == pytest.approx(0.0, abs=1e-12)
    # a shift by d moves each projection onto u by d.u: SW2 = |d| sqrt(E cos^2) = 5 / sqrt(2) ~ 3.536 in 2-D
    # (3% tolerance: the Monte-Carlo error of 2,000 random directions is ~0.8%)
    d = torch.tensor([3.0, 4.0], dtype=torch.float64)
    assert M.sliced_wasserstein(a, a + d, n_projections=2000) == pytest.approx(5 / math.sqrt(2), rel=0.03)
    perm = torch.randperm(len(a), generator=g)
    b = a * 1.5 + 0.2
    assert M.sliced_wasserstein(a[perm], b) == pytest.approx(M.sliced_wasserstein(a, b), abs=1e-12)
    # unequal sizes compare quantile functions: a set and its duplicate are the same distribution
    assert M.sliced_wasserstein(a, torch.cat([a, a])) == pytest.approx(0.0, abs=1e-12)
    assert M.sliced_wasserstein(a[:300], torch.cat([a[:300], a[:300]]) + d, n_projections=2000) == pytest.approx(
        5 / math.sqrt(2), rel=0.03)


# ---------------------------------------------------------------------------------------------------------- MMD
def _naive_mmd(a: torch.Tensor, b: torch.Tensor, bw) -> float:
    def k(x, y):
        d2 = torch.cdist(x, y) ** 2
        return sum(torch.exp(-d2 / (2 * h * h)) for h in bw)
    n, m = len(a), len(b)
    kaa, kbb = k(a, a), k(b, b)
    return float((kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1)) + (kbb.sum() - kbb.diagonal().sum())
                 / (m * (m - 1)) - 2 * k(a, b).mean())


def test_mmd_is_the_unbiased_estimator():
    g = _gen(4)
    a = torch.randn(40, 2, generator=g, dtype=torch.float64)
    b = torch.randn(30, 2, generator=g, dtype=torch.float64) * 1.3 + 0.4
    assert M.mmd(a, b, bandwidths=[0.5, 2.0]) == pytest.approx(_naive_mmd(a, b, [0.5, 2.0]), rel=1e-9)
    pooled = torch.cat([a, b])
    med = float(np.median(torch.pdist(pooled).numpy()))  # default: multiples of the pooled median distance
    assert M.mmd(a, b) == pytest.approx(_naive_mmd(a, b, [f * med for f in M.MMD_BANDWIDTH_FACTORS]), rel=1e-9)


def test_mmd_near_zero_for_same_distribution_positive_for_shift():
    g = _gen(5)
    a = torch.randn(1500, 2, generator=g, dtype=torch.float64)
    b = torch.randn(1500, 2, generator=g, dtype=torch.float64)
    same, shifted = M.mmd(a, b), M.mmd(a, b + 1.0)
    assert abs(same) < 3e-3
    assert shifted > 0.1


# ----------------------------------------------------------------------------------------------------- coverage
def test_mode_coverage():
    ref, lab, centers = _eight_gaussians(50)
    assert M.mode_coverage(ref, ref, lab) == 1.0
    half, _, _ = _eight_gaussians(100, modes=range(4), seed=1)
    assert M.mode_coverage(half, ref, lab) == 0.5
    # mode 7 gets 4 of 404 samples ~ 0.08 of its 1/8 reference share: covered only with min_share below that
    few, _, _ = _eight_gaussians(4, modes=[7], seed=2)
    mixed = torch.cat([half, few])
    assert M.mode_coverage(mixed, ref, lab, min_share=0.25) == 0.5
    assert M.mode_coverage(mixed, ref, lab, min_share=0.05) == 0.625


def test_mode_quality():
    x, _, centers = _eight_gaussians(100, std=0.05)
    assert M.mode_quality(x, centers, std=0.05) > 0.97
    assert M.mode_quality(x * 0.5, centers, std=0.05) == 0.0  # radius 1 rings: 1 away from every mode


# ------------------------------------------------------------------------------------------- precision / recall
def test_knn_precision_recall():
    real, lab, _ = _eight_gaussians(100, std=0.1)
    assert M.knn_precision_recall(real, real) == (1.0, 1.0)
    assert M.knn_precision_recall(real, real + 100.0) == (0.0, 0.0)
    collapsed, _, _ = _eight_gaussians(100, std=0.1, modes=[0], seed=3)  # only one of the eight modes
    p, r = M.knn_precision_recall(real, collapsed)
    assert p > 0.9
    assert r < 0.2


def test_class_accuracy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    assert M.class_accuracy(logits, torch.tensor([0, 1, 1, 1])) == 0.75
    assert M.class_accuracy(torch.tensor([0, 1, 0, 1]), [0, 0, 0, 0]) == 0.5
    assert M.class_accuracy(logits, torch.tensor([0, -1, 1, -1])) == 0.5  # -1 = unconditional, left out
    assert math.isnan(M.class_accuracy(logits, torch.full((4,), -1)))


def test_toy_quality():
    ref, lab, _ = _eight_gaussians(50)
    q = J.toy_quality(ref, ref, lab)
    assert q["swd"] == pytest.approx(0.0, abs=1e-12) and q["coverage"] == 1.0 and abs(q["mmd"]) < 0.05
    assert math.isnan(J.toy_quality(ref, ref)["coverage"])


# -------------------------------------------------------------------------------------------------------- judge
def test_judge_trains_caches_and_scores(monkeypatch):
    """A one-epoch digits judge (fast): [-1, 1] input, cached on disk, image metrics rank real over noise."""
    monkeypatch.setitem(J.JUDGE_CONFIGS, "digits", {**J.JUDGE_CONFIGS["digits"], "epochs": 2, "width": 8})
    monkeypatch.setattr(J, "_MEMO", {})
    judge = J.judge_for("digits")
    assert judge.source == "trained" and judge.accuracy > 0.5
    from kdlab.data import load

    test = load("digits", split="test")
    x = test.x * 2 - 1  # the diffusion data space
    monkeypatch.setattr(J, "_MEMO", {})
    again = J.judge_for("digits")
    assert again.source == "cache" and again.accuracy == judge.accuracy
    assert torch.equal(again.features(x[:10]), judge.features(x[:10]))
    assert judge.features(x).shape == (len(x), judge.net.classifier.in_features)
    assert M.class_accuracy(judge.logits(x), test.y) == pytest.approx(judge.accuracy)  # converts [-1, 1] -> [0, 1]
    real = J.image_quality(judge, x[:180], x[180:], labels=test.y[:180])
    noise = J.image_quality(judge, torch.rand(180, 1, 8, 8, generator=_gen(6)) * 2 - 1, x[180:])
    assert set(real) == {"fd", "accuracy", "precision", "recall"}
    assert real["fd"] < noise["fd"] and real["precision"] > noise["precision"]
    assert real["accuracy"] > 0.5 and math.isnan(noise["accuracy"])
