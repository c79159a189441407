"""Sample-quality metrics for diffusion distillation: distances between a generated and a reference set.

All maths runs in float64 on the CPU (or the inputs' device), vectorised and chunked so that pairwise distances
between sets of up to ~10k points never hold more than ``_BLOCK`` numbers at once. Inputs are tensors or numpy
arrays of shape (n, ...) and are flattened to (n, d).

- ``sliced_wasserstein``: sliced **W2** (2-D toys; lower is better).
- ``mmd``: unbiased squared MMD with a sum of RBF kernels (lower is better, ~0 for equal distributions).
- ``mode_coverage`` / ``mode_quality``: which labelled modes the samples reach / how many samples land on a mode.
- ``frechet_distance``: the FID formula, in whatever feature space the caller gives (``kdlab.diffusion.judge``).
- ``knn_precision_recall``: k-NN manifold precision and recall (Kynkaanniemi et al. 2019).
- ``class_accuracy``: share of predictions equal to the labels.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.linalg
import torch

from kdlab.errors import ConfigError, ShapeError

#: the most pairwise numbers held at once (float64: 32 MiB)
_BLOCK = 1 << 22

#: default RBF bandwidths of ``mmd``, as multiples of the median pairwise distance of the pooled samples
MMD_BANDWIDTH_FACTORS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)


def _flat64(x, where: str) -> torch.Tensor:
    """``x`` as a float64 (n, d) tensor (images flattened); ShapeError when it holds no rows or is a scalar."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach()
    if t.ndim == 0:
        raise ShapeError(f"{where}: expected a set of points (n, ...), got a scalar")
    t = t.to(torch.float64).reshape(len(t), -1) if t.ndim != 1 else t.to(torch.float64)[:, None]
    if len(t) == 0:
        raise ShapeError(f"{where}: the set is empty")
    return t


def _pair(a, b, where_a: str = "a", where_b: str = "b") -> tuple[torch.Tensor, torch.Tensor]:
    """Two float64 point sets of the same dimension on the same device."""
    a, b = _flat64(a, where_a), _flat64(b, where_b)
    if a.shape[1] != b.shape[1]:
        raise ShapeError(f"{where_b}: points have {b.shape[1]} features but {where_a} has {a.shape[1]}")
    return a, b.to(a.device)


def _rows_per_chunk(m: int) -> int:
    return max(1, _BLOCK // max(m, 1))


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (len(a), len(b)), clamped at 0 (float64 ||a||^2 + ||b||^2 - 2 a.b)."""
    d = torch.addmm((b * b).sum(1)[None, :], a, b.T, alpha=-2.0)
    d += (a * a).sum(1)[:, None]
    return d.clamp_min_(0.0)


# ----------------------------------------------------------------------------------------------------------- SWD
def _w2_sq_sorted(pa: torch.Tensor, pb: torch.Tensor) -> torch.Tensor:
    """Exact squared 1-D W2 between the empirical distributions in each column of sorted ``pa`` (n, P) and
    ``pb`` (m, P): the integral over u in (0, 1) of (Qa(u) - Qb(u))^2 with the step quantile functions."""
    n, m = len(pa), len(pb)
    if n == m:
        return ((pa - pb) ** 2).mean(0)
    dev = pa.device
    u = torch.cat([torch.zeros(1, dtype=torch.float64, device=dev),
                   torch.arange(1, n + 1, dtype=torch.float64, device=dev) / n,
                   torch.arange(1, m + 1, dtype=torch.float64, device=dev) / m]).sort().values
    width = u[1:] - u[:-1]
    mid = (u[1:] + u[:-1]) / 2
    ia = (mid * n).floor().long().clamp_(0, n - 1)
    ib = (mid * m).floor().long().clamp_(0, m - 1)
    return (width[:, None] * (pa[ia] - pb[ib]) ** 2).sum(0)


def sliced_wasserstein(a, b, n_projections: int = 512, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance: sqrt of the mean, over ``n_projections`` random unit directions (seeded),
    of the squared 1-D W2 between the projected sets. Unequal sizes are compared exactly through their step
    quantile functions. Same units as the data; 0 for identical sets; a shift by d in 2-D gives |d|/sqrt(2)."""
    a, b = _pair(a, b)
    if n_projections < 1:
        raise ConfigError.at("n_projections", f"must be >= 1, got {n_projections}")
    gen = torch.Generator().manual_seed(int(seed))
    dirs = torch.randn(a.shape[1], n_projections, generator=gen, dtype=torch.float64)
    dirs = (dirs / dirs.norm(dim=0, keepdim=True)).to(a.device)
    per = max(1, _BLOCK // (len(a) + len(b)) // 2)
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for s in range(0, n_projections, per):
        d = dirs[:, s:s + per]
        total += _w2_sq_sorted((a @ d).sort(0).values, (b @ d).sort(0).values).sum()
    return float(math.sqrt(max(float(total) / n_projections, 0.0)))


# ----------------------------------------------------------------------------------------------------------- MMD
def _median_distance(x: torch.Tensor, max_points: int = 2000) -> float:
    """Median pairwise distance of ``x`` (a fixed seeded subset of ``max_points`` rows when larger)."""
    if len(x) > max_points:
        x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:max_points].to(x.device)]
    d = _sq_dists(x, x)
    iu = torch.triu_indices(len(x), len(x), offset=1, device=x.device)
    vals = d[iu[0], iu[1]]
    return float(vals.median().sqrt()) if len(vals) else 0.0


def _kernel_sum(a: torch.Tensor, b: torch.Tensor, gammas: torch.Tensor, same: bool) -> float:
    """Sum over all pairs of sum_s exp(-gamma_s ||a_i - b_j||^2); ``same`` leaves out the diagonal i == j."""
    gammas = gammas.sort().values
    ratio = gammas[1:] / gammas[:-1]
    squaring = len(gammas) > 1 and bool(((ratio - 4.0).abs() < 1e-9).all())  # the default bandwidths
    total = 0.0
    rows = _rows_per_chunk(len(b))
    for s in range(0, len(a), rows):
        d = _sq_dists(a[s:s + rows], b)
        if squaring:  # exp(-4 g d) = exp(-g d)^4: one exp per pair instead of one per bandwidth
            e = torch.exp(-gammas[0] * d)
            k = e.clone()
            for _ in range(len(gammas) - 1):
                e = e.square().square()
                k += e
        else:
            k = torch.zeros_like(d)
            for g in gammas:
                k += torch.exp(-g * d)
        if same:
            idx = torch.arange(len(d), device=d.device)
            k[idx, idx + s] = 0.0
        total += float(k.sum())
    return total


def mmd(a, b, bandwidths: Sequence[float] | None = None) -> float:
    """Unbiased squared MMD (Gretton et al. 2012) with k(x, y) = sum_s exp(-||x - y||^2 / (2 h_s^2)).

    ``bandwidths`` h_s default to ``MMD_BANDWIDTH_FACTORS`` (1/8 ... 4) times the median pairwise distance of
    the pooled samples (a seeded subset of 2,000 when larger), so the kernel sees both fine and coarse structure.
    The unbiased estimate is ~0 (and may be slightly negative) when a and b come from the same distribution."""
    a, b = _pair(a, b)
    if len(a) < 2 or len(b) < 2:
        raise ShapeError(f"mmd: needs at least 2 points per set, got {len(a)} and {len(b)}")
    if bandwidths is None:
        med = _median_distance(torch.cat([a, b]))
        med = med if med > 0 else 1.0
        bandwidths = [f * med for f in MMD_BANDWIDTH_FACTORS]
    h = torch.as_tensor(list(bandwidths), dtype=torch.float64, device=a.device)
    if h.ndim != 1 or len(h) == 0 or not bool((h > 0).all()):
        raise ConfigError.at("bandwidths", f"must be positive numbers, got {list(bandwidths)}")
    gammas = 1.0 / (2.0 * h ** 2)
    n, m = len(a), len(b)
    kaa = _kernel_sum(a, a, gammas, True) / (n * (n - 1))
    kbb = _kernel_sum(b, b, gammas, True) / (m * (m - 1))
    kab = _kernel_sum(a, b, gammas, False) / (n * m)
    return float(kaa + kbb - 2.0 * kab)


# ------------------------------------------------------------------------------------------------------ coverage
def _nearest(query: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of and squared distance to the nearest ``ref`` row, for every ``query`` row (chunked)."""
    idx, dist = [], []
    rows = _rows_per_chunk(len(ref))
    for s in range(0, len(query), rows):
        d = _sq_dists(query[s:s + rows], ref)
        v, i = d.min(1)
        idx.append(i)
        dist.append(v)
    return torch.cat(idx), torch.cat(dist)


def mode_coverage(samples, reference, reference_labels, min_share: float = 0.25) -> float:
    """Share of the reference's modes (labels) that the samples cover. Each sample takes the label of its
    nearest reference point; a mode is covered when it gets at least ``min_share`` times its share of the
    reference (0.25: a mode holding 1/8 of the reference needs 1/32 of the samples). 1.0 = every mode."""
    s, r = _pair(samples, reference, "samples", "reference")
    lab = torch.as_tensor(np.asarray(reference_labels) if not isinstance(reference_labels, torch.Tensor)
                          else reference_labels).long().reshape(-1).to(r.device)
    if len(lab) != len(r):
        raise ShapeError(f"reference_labels: {len(lab)} labels for {len(r)} reference points")
    if min_share <= 0:
        raise ConfigError.at("min_share", f"must be > 0, got {min_share}")
    modes, ref_count = lab.unique(return_counts=True)
    idx, _ = _nearest(s, r)
    got = lab[idx]
    got_count = (got[:, None] == modes[None, :]).sum(0).to(torch.float64)
    ref_share = ref_count.to(torch.float64) / len(r)
    covered = got_count / len(s) >= min_share * ref_share
    return float(covered.to(torch.float64).mean())


def mode_quality(samples, centers, std: float, n_std: float = 3.0) -> float:
    """"High-quality" fraction: share of samples within ``n_std * std`` (Euclidean) of the nearest mode centre
    (for the eight Gaussians with isotropic std: 3 std holds 98.9% of a 2-D Gaussian's mass)."""
    s, c = _pair(samples, centers, "samples", "centers")
    if std <= 0 or n_std <= 0:
        raise ConfigError.at("std", f"std and n_std must be > 0, got {std} and {n_std}")
    _, dist = _nearest(s, c)
    return float((dist.sqrt() <= n_std * std).to(torch.float64).mean())


# ------------------------------------------------------------------------------------------------------ Fréchet
def _trace_sqrt_product_eigh(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr sqrt(s1 s2) for PSD s1, s2 via the symmetric form sqrt(s1) s2 sqrt(s1) (no complex parts)."""
    w, v = np.linalg.eigh(s1)
    half = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    ev = np.linalg.eigvalsh(half @ s2 @ half)
    return float(np.sqrt(np.clip(ev, 0, None)).sum())


def frechet_distance(feats_a, feats_b, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets: ||mu_a - mu_b||^2 + tr(S_a + S_b
    - 2 sqrt(S_a S_b)). This is the FID formula (Heusel et al. 2017) in the caller's feature space, NOT the
    Inception FID. ``scipy.linalg.sqrtm`` in float64; a non-finite result retries with ``eps`` * I added to both
    covariances; small imaginary parts are dropped; when they are large (near-singular covariances, more
    features than samples) the trace comes from the symmetric eigen-decomposition instead."""
    a, b = _pair(feats_a, feats_b, "feats_a", "feats_b")
    if len(a) < 2 or len(b) < 2:
        raise ShapeError(f"frechet_distance: needs at least 2 points per set, got {len(a)} and {len(b)}")
    a, b = a.cpu().numpy(), b.cpu().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1 = np.atleast_2d(np.cov(a, rowvar=False))
    s2 = np.atleast_2d(np.cov(b, rowvar=False))
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        off = np.eye(len(s1)) * eps
        covmean = scipy.linalg.sqrtm((s1 + off) @ (s2 + off))
    tr = None
    if np.isfinite(covmean).all():
        if np.iscomplexobj(covmean):
            scale = max(float(np.abs(covmean.real).max()), 1e-12)
            if np.abs(covmean.imag).max() <= 1e-3 * scale:
                tr = float(np.trace(covmean.real))
        else:
            tr = float(np.trace(covmean))
    if tr is None:
        tr = _trace_sqrt_product_eigh(s1, s2)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr)


# --------------------------------------------------------------------------------------------- precision/recall
def _kth_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from every row of ``x`` to its k-th nearest other row."""
    out = []
    rows = _rows_per_chunk(len(x))
    for s in range(0, len(x), rows):
        d = _sq_dists(x[s:s + rows], x)
        idx = torch.arange(len(d), device=d.device)
        d[idx, idx + s] = -1.0  # itself comes first, whatever rounding does to its distance
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out).sqrt()


def _inside(query: torch.Tensor, ref: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """For every ``query`` row: is it within ``radius[j]`` of some ``ref`` row j."""
    out = []
    r2 = radius ** 2
    rows = _rows_per_chunk(len(ref))
    for s in range(0, len(query), rows):
        out.append((_sq_dists(query[s:s + rows], ref) <= r2[None, :]).any(1))
    return torch.cat(out)


def knn_precision_recall(real_feats, fake_feats, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019, NeurIPS): each set's manifold is the union of
    balls reaching each point's k-th nearest neighbour in that set. Precision = share of fake points inside the
    real manifold (fidelity); recall = share of real points inside the fake manifold (diversity)."""
    real, fake = _pair(real_feats, fake_feats, "real_feats", "fake_feats")
    if k < 1 or k >= min(len(real), len(fake)):
        raise ConfigError.at("k", f"must be in 1..{min(len(real), len(fake)) - 1} for sets of "
                                  f"{len(real)} and {len(fake)} points, got {k}")
    precision = _inside(fake, real, _kth_radius(real, k)).to(torch.float64).mean()
    recall = _inside(real, fake, _kth_radius(fake, k)).to(torch.float64).mean()
    return float(precision), float(recall)


# ------------------------------------------------------------------------------------------------------ accuracy
def class_accuracy(logits_or_pred, labels) -> float:
    """Share of predictions equal to ``labels``; (n, C) logits are arg-maxed. Labels < 0 (unconditional) are
    left out; NaN when none is left."""
    p = torch.as_tensor(np.asarray(logits_or_pred) if not isinstance(logits_or_pred, torch.Tensor)
                        else logits_or_pred).detach()
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).detach()
    y = y.long().reshape(-1).to(p.device)
    pred = p.argmax(1) if p.ndim == 2 else p.reshape(-1).long()
    if len(pred) != len(y):
        raise ShapeError(f"labels: {len(y)} labels for {len(pred)} predictions")
    keep = y >= 0
    if not bool(keep.any()):
        return float("nan")
    return float((pred[keep] == y[keep]).to(torch.float64).mean())
