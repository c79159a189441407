"""Transferability metrics against independent computations (loops, closed forms, sklearn) and invariances."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from metric_refs import direct_logme

from kdlab.errors import ConfigError, ShapeError
from kdlab.transfer import metrics as M

# ----------------------------------------------------------------------------------------- LogME


def _tall(n: int, d: int, seed: int, dup: bool = False) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    y = np.arange(n) % 3
    f = g.normal(size=(n, d))
    f[:, :3] += 1.2 * np.eye(3)[y]
    if dup:  # a repeated column: F^T F is singular, the evidence is not
        f = np.hstack([f, f[:, :1]])
    return f, y


@pytest.mark.parametrize("n,d,dup", [(40, 5, False), (14, 9, False), (40, 5, True), (10, 10, False), (30, 4, None)])
def test_logme_matches_direct_evidence_maximum(n, d, dup):
    """N >= D (the eigh branch), including N = D, a rank-deficient F, a small N where little of y lies
    outside span(F), and (dup None) features that fit the labels almost exactly (tiny residual, large beta):
    the value is the direct maximum of the evidence, to the optimiser's precision."""
    if dup is None:
        y = np.arange(n) % 3
        f = np.eye(3)[y] @ np.random.default_rng(5).normal(size=(3, d))
        f += 0.02 * np.random.default_rng(6).normal(size=f.shape)
    else:
        f, y = _tall(n, d, seed=n + d, dup=dup)
    assert M.logme(f, y) == pytest.approx(direct_logme(f, y), rel=3e-9)  # tol=1e-6 leaves ~1e-9


def test_logme_wide_rank_deficient_matches_direct_evidence_maximum():
    """N < D with repeated samples (of different labels): F F^T is singular; the SVD branch keeps its
    nonzero singular values only and still gives the direct maximum."""
    g = np.random.default_rng(11)
    f = g.normal(size=(16, 30))
    f[:, :3] += 1.5 * np.eye(3)[np.arange(16) % 3]
    f = np.vstack([f, f[:2]])
    y = np.concatenate([np.arange(16) % 3, [1, 2]])
    assert M.logme(f, y) == pytest.approx(direct_logme(f, y), rel=3e-9)


def test_logme_invariant_to_sample_order_and_label_names():
    f, y = _tall(30, 6, seed=3)
    base = M.logme(f, y)
    perm = np.random.default_rng(4).permutation(len(f))
    assert M.logme(f[perm], y[perm]) == pytest.approx(base, rel=1e-12)
    assert M.logme(f, np.array([7, 2, 40])[y]) == pytest.approx(base, rel=1e-12)  # any integer names


# ----------------------------------------------------------------------------------------- LEEP and NCE


def test_leep_and_nce_invariant_to_sample_order_and_class_names():
    g = np.random.default_rng(12)
    y = g.integers(0, 4, 80)
    p = g.dirichlet(np.ones(6), 80)
    p[:, 0] += (y == 0) * 2
    p /= p.sum(1, keepdims=True)
    perm = g.permutation(80)
    src = g.permutation(6)
    for fn, arg in ((M.leep, p), (M.nce, p)):
        base = fn(arg, y)
        assert fn(arg[perm], y[perm]) == pytest.approx(base, rel=1e-12)
        assert fn(arg[:, src], y) == pytest.approx(base, rel=1e-12)  # source classes renamed
        assert fn(arg, 3 * y + 5) == pytest.approx(base, rel=1e-12)  # target classes renamed


def test_nce_matches_conditional_entropy_with_loops():
    """Tran et al. (ICCV 2019): NCE = -H(Y | Z) = sum_{y,z} P(y, z) log P(y | z) from counts."""
    g = np.random.default_rng(13)
    z = g.integers(0, 4, 90)
    y = (z + (g.random(90) < 0.4) * g.integers(0, 3, 90)) % 3
    want = 0.0
    for zi in set(z.tolist()):
        nz = (z == zi).sum()
        for yi in set(y.tolist()):
            nyz = ((z == zi) & (y == yi)).sum()
            if nyz:
                want += nyz / 90 * math.log(nyz / nz)
    assert -math.log(3) < want < -0.1
    assert M.nce(z, y) == pytest.approx(want, rel=1e-12)
    assert M.nce(np.eye(4)[z] * 3.0 - 1.0, y) == pytest.approx(want, rel=1e-12)  # logits: their argmax
    logits = torch.tensor(np.eye(4)[z], requires_grad=True)
    assert M.nce(logits, torch.tensor(y)) == pytest.approx(want, rel=1e-12)


def test_probabilities_are_checked():
    y = np.array([0, 1, 0, 1])
    p = np.full((4, 2), 0.5)
    p[0] = [1.001, -0.001]  # a clearly negative probability
    with pytest.raises(ConfigError, match="probability"):
        M.leep(p, y)
    with pytest.raises(ConfigError, match="probability"):
        M.leep(np.full((4, 2), 0.6), y)  # rows sum to 1.2
    assert np.isfinite(M.leep(torch.full((4, 2), 0.5, requires_grad=True), y))


# ----------------------------------------------------------------------------------------- inputs


def test_inputs_accept_tensors_and_nd_features():
    g = np.random.default_rng(14)
    f = g.normal(size=(30, 2, 3))
    y = np.arange(30) % 3
    want = M.hscore(f.reshape(30, 6), y)
    assert M.hscore(f, y) == pytest.approx(want, rel=1e-12)
    assert M.hscore(torch.tensor(f, requires_grad=True), torch.tensor(y)) == pytest.approx(want, rel=1e-12)
    with pytest.raises(ConfigError, match="integers"):
        M.hscore(f, torch.tensor(y, dtype=torch.float64, requires_grad=True))
    with pytest.raises(ShapeError):
        M.hscore(np.ones(30), y)


def test_check_metrics():
    assert M.check_metrics("logme") == ["logme"]
    assert M.check_metrics(("leep", "nce")) == ["leep", "nce"]
    for bad in ([], ["logme", "nope"]):
        with pytest.raises(ConfigError, match="valid"):
            M.check_metrics(bad)


# ----------------------------------------------------------------------------------------- GBC


def _gbc_reference(f: np.ndarray, y: np.ndarray) -> float:
    """Pándy et al. (CVPR 2022) with population variances, over ordered pairs, by loops."""
    classes = np.unique(y)
    total = 0.0
    for i in classes:
        for j in classes:
            if i == j:
                continue
            a, b = f[y == i], f[y == j]
            va, vb = a.var(0), b.var(0)
            s = (va + vb) / 2
            db = ((a.mean(0) - b.mean(0)) ** 2 / s).sum() / 8 + 0.5 * np.log(s / np.sqrt(va * vb)).sum()
            total -= math.exp(-db)
    return total


def test_gbc_principal_components():
    """n_components keeps the top principal components of the centred features (default 64); keeping at
    least all dimensions (or None) leaves the features as they are; a shift does not move the components."""
    g = np.random.default_rng(15)
    y = np.arange(120) % 3
    f = g.normal(size=(120, 6)) * np.array([3.0, 2.5, 2.0, 0.5, 0.4, 0.3]) + 0.8 * np.eye(6)[y]
    f = f @ np.linalg.qr(g.normal(size=(6, 6)))[0]
    full = M.gbc(f, y, n_components=None)
    assert full == pytest.approx(_gbc_reference(f, y), rel=1e-6)
    assert M.gbc(f, y, n_components=6) == pytest.approx(full, rel=1e-12)
    fc = f - f.mean(0)
    top3 = fc @ np.linalg.svd(fc, full_matrices=False)[2][:3].T
    want = _gbc_reference(top3, y)
    assert want != pytest.approx(full, rel=1e-3)
    assert M.gbc(f, y, n_components=3) == pytest.approx(want, rel=1e-6)
    assert M.gbc(f + 50.0, y, n_components=3) == pytest.approx(want, rel=1e-6)
    wide = np.hstack([f, g.normal(size=(120, 70)) * 0.01])  # 76 dims: the default keeps 64
    assert M.gbc(wide, y) == pytest.approx(M.gbc(wide, y, n_components=64), rel=1e-12)
    assert M.gbc(wide, y) != pytest.approx(M.gbc(wide, y, n_components=None), rel=1e-6)


def test_gbc_degenerate_features():
    """A feature constant within a class, and all-constant features, stay finite and scale invariant."""
    g = np.random.default_rng(16)
    y = np.arange(60) % 3
    f = g.normal(size=(60, 3)) + np.eye(3)[y]
    f[y == 0, 2] = 0.3  # no spread for class 0 in dimension 2
    base = M.gbc(f, y)
    assert np.isfinite(base) and -6 <= base <= 0
    for s in (0.1, 1e4):
        assert M.gbc(f * s, y) == pytest.approx(base, rel=1e-9)
    assert M.gbc(np.ones((60, 4)), y) == pytest.approx(-6.0, rel=1e-12)  # identical classes


# ----------------------------------------------------------------------------------------- H-score, TransRate


def test_hscore_invariant_to_invertible_linear_maps_and_shifts():
    g = np.random.default_rng(17)
    y = np.arange(90) % 3
    f = g.normal(size=(90, 4)) + np.eye(3, 4)[y]
    a = g.normal(size=(4, 4)) + 3 * np.eye(4)
    base = M.hscore(f, y)
    assert M.hscore(f @ a + 9.0, y) == pytest.approx(base, rel=1e-8)


def test_transrate_invariant_to_shift_and_sample_order():
    g = np.random.default_rng(18)
    y = np.arange(40) % 2
    f = g.normal(size=(40, 3)) + np.eye(2, 3)[y]
    base = M.transrate(f, y)
    perm = g.permutation(40)
    assert M.transrate(f + 5.0, y) == pytest.approx(base, rel=1e-9)
    assert M.transrate(f * 1e-3, y) == pytest.approx(base, rel=1e-9)  # small features are rescaled too
    assert M.transrate(f[perm], y[perm]) == pytest.approx(base, rel=1e-9)


# ----------------------------------------------------------------------------------------- kNN, linear probe


def _knn_predictions(f: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Leave-one-out kNN by loops: cosine similarity, majority vote; equal counts go to the class of the
    nearest neighbour among them."""
    fn = f / np.linalg.norm(f, axis=1, keepdims=True)
    preds = []
    for i in range(len(f)):
        sims = [(float(fn[i] @ fn[j]), j) for j in range(len(f)) if j != i]
        sims.sort(reverse=True)
        count: dict[int, int] = {}
        first: dict[int, int] = {}
        for rank, (_, j) in enumerate(sims[:k]):
            count[int(y[j])] = count.get(int(y[j]), 0) + 1
            first.setdefault(int(y[j]), rank)
        best = max(count.values())
        preds.append(min((c for c in count if count[c] == best), key=first.__getitem__))
    return np.array(preds)


def _knn_reference(f: np.ndarray, y: np.ndarray, k: int) -> float:
    return float((_knn_predictions(f, y, k) == y).mean())


def test_knn_matches_loop_reference_any_chunk_and_row_scale():
    g = np.random.default_rng(19)
    y = g.integers(0, 3, 45)
    f = g.normal(size=(45, 3)) + 0.7 * np.eye(3)[y]
    scaled = f * np.exp(g.uniform(-5, 5, (45, 1)))  # cosine similarity ignores each row's norm
    for k in (1, 2, 3, 4, 5, 44):
        want = _knn_reference(f, y, k)
        assert M.knn_accuracy(f, y, k=k) == want
        assert M.knn_accuracy(scaled, y, k=k, chunk=7) == want
    assert M.knn_accuracy(f, y) == _knn_reference(f, y, 5)  # default k = 5
    for bad in (0, 45):
        with pytest.raises(ConfigError, match="k"):
            M.knn_accuracy(f, y, k=bad)


def test_knn_one_neighbour_is_the_nearest_other_sample():
    """k=1 on 400 samples: the vote is the label of the most cosine-similar other sample."""
    g = np.random.default_rng(21)
    y = g.integers(0, 4, 400)
    f = g.normal(size=(400, 5)) + 0.5 * np.eye(4, 5)[y]
    fn = f / np.linalg.norm(f, axis=1, keepdims=True)
    sim = fn @ fn.T
    np.fill_diagonal(sim, -np.inf)
    assert M.knn_accuracy(f, y, k=1) == (y[sim.argmax(1)] == y).mean()


def test_knn_majority_beats_nearness_and_nearest_breaks_ties():
    """Sample 0 at angle 0, the others at growing angles; with k=15 its 7 nearest are class 1 and the next
    8 class 2: the majority (2) wins however near the minority is. With k=2 and one neighbour of each
    class, the nearer one wins, whichever class index it has."""
    ang = np.concatenate([[0.0], np.linspace(0.01, 0.3, 15)])
    f = np.stack([np.cos(ang), np.sin(ang)], 1)
    y = np.array([2] + [1] * 7 + [2] * 8)
    pred = _knn_predictions(f, y, 15)
    assert pred[0] == 2
    assert M.knn_accuracy(f, y, k=15) == (pred == y).mean()
    pts = np.array([[1.0, 0.0], [1.0, 0.1], [1.0, 0.3], [-1.0, 0.0], [-1.0, 0.1], [-1.0, 0.3]])
    for near, far in ((0, 1), (1, 0)):
        lab = np.array([near, near, far, far, near, far])  # sample 0: neighbour 1 (near) then 2 (far)
        pred = _knn_predictions(pts, lab, 2)
        assert pred[0] == near
        assert M.knn_accuracy(pts, lab, k=2) == (pred == lab).mean()


def _probe_reference(f: np.ndarray, y: np.ndarray, folds: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    accs = []
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=0).split(f, y):
        mu, sd = f[tr].mean(0), f[tr].std(0)
        clf = LogisticRegression(C=1.0, max_iter=1000).fit((f[tr] - mu) / sd, y[tr])
        accs.append((clf.predict((f[te] - mu) / sd) == y[te]).mean())
    return float(np.mean(accs))


def test_linear_probe_matches_stratified_cv_reference():
    """Defaults: 5 stratified folds (fewer if a class has fewer samples, down to 2), seed 0, C = 1."""
    g = np.random.default_rng(20)
    y = np.concatenate([np.arange(40) % 2, [2, 2, 2]])
    f = g.normal(size=(43, 4)) + 0.9 * np.eye(3, 4)[y]
    assert M.linear_probe(f, y) == pytest.approx(_probe_reference(f, y, 3), abs=1e-9)  # class 2 has 3
    y2 = np.arange(40) % 2
    assert M.linear_probe(f[:40], y2) == pytest.approx(_probe_reference(f[:40], y2, 5), abs=1e-9)
    two = np.array([0, 1, 0, 1, 2, 2])
    assert 0.0 <= M.linear_probe(f[:6], two) <= 1.0  # 2 samples of a class: 2 folds
    with pytest.raises(ConfigError, match="2 samples"):
        M.linear_probe(f[:5], np.array([0, 1, 0, 1, 2]))
