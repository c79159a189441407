"""kdlab.diffusion.metrics and .judge: each metric against its formula or a known value."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdlab.diffusion import judge as J
from kdlab.diffusion import metrics as M
from kdlab.errors import ConfigError, ShapeError

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


def _w2_by_replication(a: torch.Tensor, b: torch.Tensor) -> float:
    """Exact 1-D W2 of two empirical sets of sizes n and m: each point repeated m (resp. n) times, then sorted
    and paired (uniform measures of equal size: the sorted pairing is optimal)."""
    ra, rb = a.repeat_interleave(len(b)).sort().values, b.repeat_interleave(len(a)).sort().values
    return float(((ra - rb) ** 2).mean().sqrt())


def test_sliced_wasserstein_of_unequal_sizes_is_the_exact_w2():
    g = _gen(6)
    a, b = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64) + 0.7
    want = _w2_by_replication(a, b)  # 1-D data: every projection is +-1, so SW2 = W2
    assert M.sliced_wasserstein(a, b, n_projections=7) == pytest.approx(want, rel=1e-12)
    assert M.sliced_wasserstein(b[:3], a[:5], n_projections=1) == pytest.approx(_w2_by_replication(b[:3], a[:5]),
                                                                              rel=1e-12)
    one = M.sliced_wasserstein(a[:1], b[:1], n_projections=3)  # single points: |a - b|
    assert one == pytest.approx(float((a[0] - b[0]).abs()), rel=1e-12)
    # in 2-D, unequal sizes agree with the equal-size path on the replicated sets (same seeded directions)
    a2, b2 = torch.randn(6, 2, generator=g, dtype=torch.float64), torch.randn(4, 2, generator=g, dtype=torch.float64)
    assert M.sliced_wasserstein(a2, b2) == pytest.approx(
        M.sliced_wasserstein(a2.repeat_interleave(4, 0), b2.repeat_interleave(6, 0)), rel=1e-12)
    with pytest.raises(ShapeError, match="scalar"):
        M.sliced_wasserstein(torch.tensor(1.0), b)
    with pytest.raises(ShapeError, match="empty"):
        M.sliced_wasserstein(a[:0], b)


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
    documented = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)  # the docstring's 1/8 ... 4 times the median
    assert M.mmd(a, b) == pytest.approx(_naive_mmd(a, b, [f * med for f in documented]), rel=1e-9)


def test_mmd_near_zero_for_same_distribution_positive_for_shift():
    g = _gen(5)
    a = torch.randn(1500, 2, generator=g, dtype=torch.float64)
    b = torch.randn(1500, 2, generator=g, dtype=torch.float64)
    same, shifted = M.mmd(a, b), M.mmd(a, b + 1.0)
    assert abs(same) < 3e-3
    assert shifted > 0.1


def _naive_precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int) -> tuple[float, float]:
    """Kynkaanniemi et al.'s definition written out with full distance matrices (column 0 of a sorted row of
    a set's own distances is the point itself)."""
    def inside(query, ref):
        radius = torch.cdist(ref, ref).sort(1).values[:, k]
        return (torch.cdist(query, ref) <= radius[None, :]).any(1).double().mean()
    return float(inside(fake, real)), float(inside(real, fake))


def test_chunked_metrics_equal_their_one_block_values_and_the_definitions(monkeypatch):
    g = _gen(7)
    a = torch.randn(37, 3, generator=g, dtype=torch.float64)
    b = torch.randn(23, 3, generator=g, dtype=torch.float64) * 1.8 + 1.0  # partly overlapping: no metric at 0 or 1
    labels = (a[:, 0] > 0).long() + 2 * (a[:, 1] > 0).long()
    centers = torch.randn(4, 3, generator=g, dtype=torch.float64)

    def everything():
        return (M.sliced_wasserstein(a, b, n_projections=9), M.mmd(a, b), M.mmd(a, b, bandwidths=[0.3, 1.1]),
                *M.knn_precision_recall(a, b, k=1), *M.knn_precision_recall(b, a, k=2),
                M.mode_coverage(b, a, labels), M.mode_quality(b, centers, 0.5))

    whole = everything()
    assert whole[3:5] == pytest.approx(_naive_precision_recall(a, b, 1), abs=1e-12)
    assert whole[5:7] == pytest.approx(_naive_precision_recall(b, a, 2), abs=1e-12)
    assert all(0 < v < 1 for v in (*whole[3:5], *whole[6:]))  # strictly between: a dropped row would show
    monkeypatch.setattr(M, "_BLOCK", 64)  # one row (or one projection) per chunk: every chunk offset is exercised
    chunked = everything()
    for got, want in zip(chunked, whole, strict=True):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_each_metric_takes_its_smallest_valid_input_and_refuses_the_next_smaller():
    g = _gen(8)
    two_a, two_b = torch.randn(2, 3, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g,
                                                                                   dtype=torch.float64)
    for fn in (M.mmd, M.frechet_distance):  # two points per set: the fewest with a spread
        assert math.isfinite(fn(two_a, two_b)) and math.isfinite(fn(two_b, two_a))
        for small in ((two_a[:1], two_b), (two_a, two_b[:1])):
            with pytest.raises(ShapeError, match="at least 2"):
                fn(*small)
    assert math.isfinite(M.mmd(two_a, two_b, bandwidths=[1e-3]))
    for bad in ([0.0], [1.0, -1.0], []):
        with pytest.raises(ConfigError, match="bandwidths"):
            M.mmd(two_a, two_b, bandwidths=bad)
    a, b = torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(4, 2, generator=g, dtype=torch.float64)
    for k in (1, 3):  # k in 1 .. min(n) - 1
        assert all(0 <= v <= 1 for v in M.knn_precision_recall(a, b, k=k) + M.knn_precision_recall(b, a, k=k))
    for k in (0, 4):
        with pytest.raises(ConfigError, match="1..3"):
            M.knn_precision_recall(a, b, k=k)
    lab = torch.tensor([0, 0, 1, 1, 1])
    assert M.mode_coverage(b, a, lab, min_share=1e-9) == 1.0  # any sample of a mode covers it
    assert M.mode_quality(b, a, std=1e-9, n_std=1e-9) == 0.0 and M.mode_quality(a, a, std=1.0) == 1.0
    on_edge = torch.tensor([[3.0, 4.0], [0.0, 6.0]], dtype=torch.float64)  # 5 and 6 from the origin
    assert M.mode_quality(on_edge, torch.zeros(1, 2, dtype=torch.float64), std=2.5, n_std=2.0) == 0.5  # <= 5
    for kw in ({"std": 0.0}, {"std": 1.0, "n_std": 0.0}):
        with pytest.raises(ConfigError, match="must be > 0"):
            M.mode_quality(b, a, **kw)
    with pytest.raises(ConfigError, match="min_share"):
        M.mode_coverage(b, a, lab, min_share=0.0)


def test_boundaries_count_as_inside_and_small_or_degenerate_scales_keep_their_bandwidths():
    # precision: a fake point exactly at a real point's k-th neighbour distance is inside its ball
    real = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]], dtype=torch.float64)  # 1-NN radii 1, 1, 2
    fake = torch.tensor([[0.0, 1.0], [10.0, 10.0]], dtype=torch.float64)
    assert M.knn_precision_recall(real, fake, k=1)[0] == 0.5
    # coverage: a mode that gets exactly min_share times its reference share is covered
    ref = torch.tensor([[0.0, 0.0]] * 4 + [[5.0, 0.0]] * 4, dtype=torch.float64)
    lab = torch.tensor([0] * 4 + [1] * 4)
    samples = torch.tensor([[0.1, 0.0]] * 3 + [[5.1, 0.0]], dtype=torch.float64)  # mode 1 gets 1/4 = 0.5 * 1/2
    assert M.mode_coverage(samples, ref, lab, min_share=0.5) == 1.0
    # the default bandwidths follow the median distance also below 1, and identical points give 0
    g = _gen(9)
    a, b = (torch.randn(21, 2, generator=g, dtype=torch.float64) * 0.05 for _ in range(2))  # 861 pairs: odd
    med = float(np.median(torch.pdist(torch.cat([a, b])).numpy()))
    assert med < 0.5 and M.mmd(a, b) == pytest.approx(_naive_mmd(a, b, [f * med for f in (0.125, 0.25, 0.5, 1.0,
                                                                                          2.0, 4.0)]), rel=1e-9)
    same = torch.ones(5, 2, dtype=torch.float64)
    assert M.mmd(same, same) == pytest.approx(0.0, abs=1e-12)


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
