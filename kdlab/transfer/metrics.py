"""Transferability / task-similarity metrics: how well a source model's features or predictions fit a target task.

Every metric takes the same inputs, ``(features or source predictions, target labels)``, works in float64,
is vectorised over samples (loops run over classes at most), and returns a float where larger means
"more transferable":

- ``logme`` (You et al., ICML 2021): log marginal evidence of a Bayesian linear model, per class, averaged.
- ``leep`` (Nguyen et al., ICML 2020): log expected empirical prediction from source class probabilities.
- ``nce`` (Tran et al., ICCV 2019): negative conditional entropy -H(Y | Z) of target labels given hard
  source labels.
- ``hscore`` (Bao et al., ICIP 2019): tr(pinv(cov f) cov(E[f | y])), in [0, C - 1].
- ``gbc`` (Pándy et al., CVPR 2022): minus the summed pairwise Bhattacharyya coefficients of per-class
  diagonal Gaussians, in [-C(C - 1), 0].
- ``transrate`` (Huang et al., ICML 2022): coding rate of all features minus the class-weighted coding rate
  within classes.
- ``knn_accuracy``: leave-one-out k-nearest-neighbour accuracy (cosine similarity).
- ``linear_probe``: cross-validated accuracy of a logistic-regression probe.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from kdlab.errors import ConfigError, ShapeError

FEATURE_METRICS = ("logme", "hscore", "gbc", "transrate", "knn_accuracy", "linear_probe")
PREDICTION_METRICS = ("leep", "nce")
METRICS = (*FEATURE_METRICS, *PREDICTION_METRICS)


# ----------------------------------------------------------------------------------------- inputs

def as_float64(x: object, where: str) -> np.ndarray:
    """A finite (N, D) float64 array from a tensor or array-like; (N, ...) inputs are flattened."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim < 2:
        raise ShapeError(f"{where}: expected a (samples, dims) array, got shape {a.shape}")
    a = a.reshape(len(a), -1)
    if not np.isfinite(a).all():
        raise ConfigError(f"{where}: contains NaN or infinite values")
    return a


def as_labels(y: object, n: int, where: str = "labels") -> tuple[np.ndarray, int]:
    """Integer labels (N,) re-indexed to 0..C-1 in sorted order, and C; checks the length against ``n``."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise ShapeError(f"{where}: expected {n} labels (one per sample), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f"{where}: labels must be integers, got dtype {y.dtype}")
    classes, dense = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ConfigError(f"{where}: need at least 2 target classes, got {len(classes)}")
    return dense.astype(np.int64), len(classes)


def _onehot(y: np.ndarray, c: int) -> np.ndarray:
    out = np.zeros((len(y), c))
    out[np.arange(len(y)), y] = 1.0
    return out


def _probabilities(p: object, where: str) -> np.ndarray:
    p = as_float64(p, where)
    if (p < -1e-9).any() or not np.allclose(p.sum(1), 1.0, atol=1e-4):
        raise ConfigError(f"{where}: rows must be probability vectors (non-negative, summing to 1); pass "
                          "softmax(logits)")
    return np.clip(p, 0.0, None)


# ----------------------------------------------------------------------------------------- feature metrics

def logme(features: object, labels: object, max_iter: int = 100, tol: float = 1e-6) -> float:
    """LogME: mean over classes of the maximised log evidence per sample of y_c ~ N(F m, 1/beta), m ~ N(0, 1/alpha).

    Uses the eigen-decomposition of F^T F (or the SVD of F when N < D) once and runs the MacKay fixed point
    for all classes at the same time. Invariant to feature scaling and rotation.
    """
    f = as_float64(features, "features")
    y, c = as_labels(labels, len(f))
    n, d = f.shape
    targets = _onehot(y, c)  # (N, C)
    if n > d:
        sigma, v = np.linalg.eigh(f.T @ f)
        keep = sigma > sigma.max() * 1e-12
        sigma, v = sigma[keep], v[:, keep]
        z = (v.T @ (f.T @ targets)) / np.sqrt(sigma)[:, None]  # projections onto left singular vectors
    else:
        u, s, _ = np.linalg.svd(f, full_matrices=False)
        keep = s > s.max() * 1e-6
        sigma, z = s[keep] ** 2, u[:, keep].T @ targets
    z2 = z**2  # (k, C)
    outside = np.maximum((targets**2).sum(0) - z2.sum(0), 0.0)  # part of y outside span(F)
    alpha, beta = np.ones(c), np.ones(c)
    for _ in range(max_iter):
        denom = alpha + beta * sigma[:, None]  # (k, C)
        gamma = (beta * sigma[:, None] / denom).sum(0)
        m2 = (beta**2 * sigma[:, None] * z2 / denom**2).sum(0)
        res = (alpha**2 * z2 / denom**2).sum(0) + outside
        new_alpha = gamma / np.maximum(m2, 1e-300)
        new_beta = (n - gamma) / np.maximum(res, 1e-300)
        done = np.abs(new_alpha / alpha - 1).max() < tol and np.abs(new_beta / beta - 1).max() < tol
        alpha, beta = new_alpha, new_beta
        if done:
            break
    denom = alpha + beta * sigma[:, None]
    m2 = (beta**2 * sigma[:, None] * z2 / denom**2).sum(0)
    res = (alpha**2 * z2 / denom**2).sum(0) + outside
    k = len(sigma)
    evidence = (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * math.log(2 * math.pi)
                - beta / 2 * res - alpha / 2 * m2 - 0.5 * np.log(denom).sum(0) - (d - k) / 2 * np.log(alpha))
    return float((evidence / n).mean())


def hscore(features: object, labels: object) -> float:
    """H-score: tr(pinv(cov f) cov(E[f | y])), with the class-conditional mean replacing each feature."""
    f = as_float64(features, "features")
    y, c = as_labels(labels, len(f))
    f = f - f.mean(0)
    cov_f = f.T @ f / len(f)
    counts = np.bincount(y, minlength=c)
    means = (_onehot(y, c).T @ f) / counts[:, None]  # (C, D) class means
    g = means[y]  # each sample replaced by its class mean
    cov_g = g.T @ g / len(f)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-10, hermitian=True) @ cov_g))


def gbc(features: object, labels: object, n_components: int | None = 64) -> float:
    """GBC: -sum over ordered class pairs of the Bhattacharyya coefficient of diagonal Gaussians per class.

    Features are first reduced to ``n_components`` principal components (as in the paper; None keeps all).
    0 means perfectly separated classes, -C(C-1) identical ones.
    """
    f = as_float64(features, "features")
    y, c = as_labels(labels, len(f))
    f = f - f.mean(0)
    if n_components is not None and f.shape[1] > n_components:
        _, _, vt = np.linalg.svd(f, full_matrices=False)
        f = f @ vt[:n_components].T
    onehot = _onehot(y, c)
    counts = onehot.sum(0)[:, None]
    mu = onehot.T @ f / counts  # (C, D)
    var = onehot.T @ f**2 / counts - mu**2 + 1e-8 * (f.var(0).mean() + 1e-12)  # (C, D) diagonal variances
    pair_var = (var[:, None, :] + var[None, :, :]) / 2  # (C, C, D)
    diff = mu[:, None, :] - mu[None, :, :]
    log_det = np.log(var).sum(1)
    db = (diff**2 / pair_var).sum(2) / 8 + 0.5 * (np.log(pair_var).sum(2) - 0.5 * (log_det[:, None] + log_det[None, :]))
    bc = np.exp(-db)
    return float(-(bc.sum() - np.trace(bc)))


def _coding_rate(z: np.ndarray, eps: float) -> float:
    n, d = z.shape
    small = z @ z.T if n < d else z.T @ z  # logdet(I + a Z^T Z) = logdet(I + a Z Z^T)
    return 0.5 * np.linalg.slogdet(np.eye(len(small)) + d / (n * eps) * small)[1]


def transrate(features: object, labels: object, eps: float = 1e-4) -> float:
    """TransRate: R(Z) - sum_c (n_c / n) R(Z_c), with R(Z) = 1/2 logdet(I + d/(n eps) Z^T Z) on centred Z.

    Features are first scaled to unit mean squared norm so the score does not depend on their scale.
    """
    f = as_float64(features, "features")
    y, c = as_labels(labels, len(f))
    f = f - f.mean(0)
    f = f / math.sqrt(max((f**2).sum(1).mean(), 1e-300))
    within = sum((y == k).mean() * _coding_rate(f[y == k], eps) for k in range(c))
    return float(_coding_rate(f, eps) - within)


def knn_accuracy(features: object, labels: object, k: int = 5, chunk: int = 2048) -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour vote (cosine similarity, ties to the nearest)."""
    f = as_float64(features, "features")
    y, c = as_labels(labels, len(f))
    if k < 1 or k >= len(f):
        raise ConfigError(f"k: must be in [1, {len(f) - 1}], got {k}")
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    correct = 0
    for start in range(0, len(f), chunk):
        sim = f[start:start + chunk] @ f.T
        rows = np.arange(len(sim))
        sim[rows, start + rows] = -np.inf  # leave the sample itself out
        nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, nn, 1), axis=1)
        nn = np.take_along_axis(nn, order, 1)
        votes = np.zeros((len(sim), c))
        np.add.at(votes, (rows[:, None], y[nn]), 1.0)
        nearest = np.full((len(sim), c), k)  # rank of each class's nearest neighbour (k: none)
        np.minimum.at(nearest, (rows[:, None], y[nn]), np.arange(k))
        pred = (votes * (k + 1) - nearest).argmax(1)  # majority first; equal counts: the nearer class wins
        correct += int((pred == y[start:start + chunk]).sum())
    return correct / len(f)


def linear_probe(features: object, labels: object, folds: int = 5, c_reg: float = 1.0, seed: int = 0) -> float:
    """Stratified cross-validated accuracy of an L2 logistic-regression probe on standardised features."""
    # lazy: importing sklearn costs about a second
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f = as_float64(features, "features")
    y, c = as_labels(labels, len(f))
    folds = min(folds, int(np.bincount(y).min()))
    if folds < 2:
        raise ConfigError("labels: the linear probe needs at least 2 samples of every class")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c_reg, max_iter=300))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return float(cross_val_score(probe, f, y, cv=cv).mean())


# ----------------------------------------------------------------------------------------- prediction metrics

def _joint(source_probs: np.ndarray, y: np.ndarray, c: int) -> np.ndarray:
    """Empirical joint P(y, z) (C_target, C_source) from source class probabilities."""
    return _onehot(y, c).T @ source_probs / len(y)


def _conditional(joint: np.ndarray) -> np.ndarray:
    """P(y | z); a source class z never predicted (P(z) = 0) gets an all-zero column instead of NaN."""
    pz = joint.sum(0)
    return np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)


def leep(source_probs: object, labels: object) -> float:
    """LEEP: mean log sum_z P(y_i | z) theta_z(x_i), from the source model's class probabilities theta.

    0 for a source that already predicts the target labels perfectly, about log(1/C) for uninformative ones.
    """
    p = _probabilities(source_probs, "source_probs")
    y, c = as_labels(labels, len(p))
    eep = p @ _conditional(_joint(p, y, c)).T  # (N, C_target)
    return float(np.log(np.maximum(eep[np.arange(len(y)), y], 1e-300)).mean())


def nce(source_preds: object, labels: object) -> float:
    """NCE: -H(Y | Z) with Z the source model's hard labels (argmax of probabilities/logits, or given labels)."""
    if isinstance(source_preds, torch.Tensor):
        source_preds = source_preds.detach().cpu().numpy()
    z = np.asarray(source_preds)
    if z.ndim == 2:
        z = z.argmax(1)
    y, c = as_labels(labels, len(z))
    z = np.unique(z, return_inverse=True)[1]
    joint = _joint(_onehot(z, int(z.max()) + 1), y, c)
    cond = _conditional(joint)
    return float((joint * np.log(np.where(joint > 0, cond, 1.0))).sum())


FEATURE_FNS: dict[str, Callable[..., float]] = {"logme": logme, "hscore": hscore, "gbc": gbc,
                                               "transrate": transrate, "knn_accuracy": knn_accuracy,
                                               "linear_probe": linear_probe}
PREDICTION_FNS: dict[str, Callable[..., float]] = {"leep": leep, "nce": nce}


def check_metrics(metrics: object) -> list[str]:
    """``metrics`` as a list of known metric names (a ConfigError lists the valid ones)."""
    names = [metrics] if isinstance(metrics, str) else list(metrics)  # type: ignore[call-overload]
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise ConfigError(f"metrics: unknown {bad or '(empty)'}; valid: {', '.join(METRICS)}")
    return names
