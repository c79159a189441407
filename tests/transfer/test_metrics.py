"""Transferability metrics against their definitions, limits and invariances."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import ortho_group

from kdlab.errors import ConfigError, ShapeError
from kdlab.transfer import metrics as M

C = 5


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """Informative features: class means 3 apart in 20 dimensions, unit noise."""
    g = np.random.default_rng(0)
    y = np.repeat(np.arange(C), 80)
    centres = g.normal(0, 3.0, (C, 20))
    return centres[y] + g.normal(0, 1.0, (len(y), 20)), y


def _onehot(y: np.ndarray, c: int) -> np.ndarray:
    return np.eye(c)[y]


def test_leep_perfect_is_zero_and_random_is_log_one_over_c():
    y = np.repeat(np.arange(C), 200)
    assert M.leep(_onehot(y, C), y) == pytest.approx(0.0, abs=1e-12)
    g = np.random.default_rng(1)
    p = g.dirichlet(np.ones(7), size=len(y))  # 7 source classes unrelated to y
    assert M.leep(p, y) == pytest.approx(math.log(1 / C), abs=0.02)
    assert M.leep(np.full((len(y), 7), 1 / 7), y) == pytest.approx(math.log(1 / C), abs=1e-12)


def test_leep_matches_definition_with_loops():
    g = np.random.default_rng(2)
    y = g.integers(0, 3, 60)
    p = g.dirichlet(np.ones(4), 60)
    joint = np.zeros((3, 4))
    for i in range(60):
        joint[y[i]] += p[i] / 60
    cond = joint / joint.sum(0)
    want = np.mean([math.log(sum(cond[y[i], z] * p[i, z] for z in range(4))) for i in range(60)])
    assert M.leep(p, y) == pytest.approx(want, rel=1e-12)


def test_nce_perfect_is_zero_and_random_near_minus_log_c():
    y = np.repeat(np.arange(C), 200)
    assert M.nce(y, y) == 0.0
    assert M.nce(_onehot((y + 2) % C, C), y) == 0.0  # a relabelling is still perfectly informative
    z = np.random.default_rng(3).integers(0, 6, len(y))
    assert M.nce(z, y) == pytest.approx(math.log(1 / C), abs=0.05)


def test_never_predicted_source_class_gives_no_nan():
    y = np.repeat(np.arange(3), 10)
    p = np.zeros((30, 5))
    p[np.arange(30), y] = 1.0  # source classes 3 and 4 are never predicted (probability exactly 0)
    assert np.isfinite(M.leep(p, y)) and M.leep(p, y) == pytest.approx(0.0, abs=1e-12)
    assert np.isfinite(M.nce(p, y))


def test_hscore_matches_direct_formula(blobs):
    f, y = blobs
    f = f[:, :6]
    fc = f - f.mean(0)
    cov = sum(np.outer(r, r) for r in fc) / len(f)
    g = np.stack([fc[y == y[i]].mean(0) for i in range(len(f))])
    cov_g = sum(np.outer(r, r) for r in g) / len(f)
    want = np.trace(np.linalg.inv(cov) @ cov_g)
    assert M.hscore(f, y) == pytest.approx(want, rel=1e-9)


def test_hscore_random_near_zero_informative_bounded(blobs):
    f, y = blobs
    noise = np.random.default_rng(4).normal(size=(4000, 8))
    y_noise = np.random.default_rng(5).integers(0, C, 4000)
    assert abs(M.hscore(noise, y_noise)) < 0.02
    h = M.hscore(f, y)
    assert 0.5 * (C - 1) < h <= C - 1 + 1e-9
    # rank-deficient covariance (duplicated columns): pinv keeps it finite and bounded
    assert M.hscore(np.hstack([f, f]), y) == pytest.approx(h, rel=1e-6)


def test_gbc_range_and_limits(blobs):
    f, y = blobs
    score = M.gbc(f, y)
    assert -C * (C - 1) <= score <= 0
    assert score > -0.5  # well separated classes: coefficients near 0
    noise = np.random.default_rng(6).normal(size=(4000, 8))
    assert M.gbc(noise, np.arange(4000) % C) == pytest.approx(-C * (C - 1), rel=0.02)  # same Gaussian


def test_logme_invariant_to_scaling_and_rotation(blobs):
    f, y = blobs
    base = M.logme(f, y)
    assert M.logme(f * 37.5, y) == pytest.approx(base, abs=1e-6)
    rot = ortho_group.rvs(f.shape[1], random_state=7)
    assert M.logme(f @ rot, y) == pytest.approx(base, abs=1e-6)


def test_logme_prefers_informative_features(blobs):
    f, y = blobs
    noise = np.random.default_rng(8).normal(size=f.shape)
    assert M.logme(f, y) > M.logme(noise, y) + 0.2
    wide = np.random.default_rng(9).normal(size=(50, 200))  # N < D branch runs and is finite
    assert np.isfinite(M.logme(wide, np.arange(50) % 5))


def test_transrate_knn_probe_order_informative_over_random(blobs):
    f, y = blobs
    noise = np.random.default_rng(10).normal(size=f.shape)
    assert M.transrate(f, y) > M.transrate(noise, y)
    assert M.transrate(f * 5, y) == pytest.approx(M.transrate(f, y), rel=1e-9)
    assert M.knn_accuracy(f, y) > 0.95 and M.knn_accuracy(noise, y) < 0.4
    assert M.linear_probe(f, y) > 0.95 and M.linear_probe(noise, y) < 0.4


def test_knn_is_leave_one_out():
    f = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])
    y = np.array([0, 0, 1, 1])
    assert M.knn_accuracy(f, y, k=1) == 1.0
    assert M.knn_accuracy(f, np.array([0, 1, 0, 1]), k=1) == 0.0  # itself would have made it 1.0


def test_inputs_are_validated():
    with pytest.raises(ShapeError, match="labels"):
        M.logme(np.zeros((5, 3)), np.zeros(4, int))
    with pytest.raises(ConfigError, match="NaN"):
        M.hscore(np.full((4, 2), np.nan), np.array([0, 1, 0, 1]))
    with pytest.raises(ConfigError, match="probability"):
        M.leep(np.ones((4, 3)), np.array([0, 1, 0, 1]))
    with pytest.raises(ConfigError, match="valid"):
        M.check_metrics(["logme", "nope"])
