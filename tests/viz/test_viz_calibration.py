from __future__ import annotations

import numpy as np
import pytest

from kdlab.viz import calibration, expected_calibration_error, reliability_bins


def _constant(conf: float, n: int, n_correct: int, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Every sample predicts class 0 with probability ``conf``; ``n_correct`` of them are class 0."""
    rest = (1 - conf) / (classes - 1)
    probs = np.full((n, classes), rest)
    probs[:, 0] = conf
    labels = np.ones(n, dtype=int)
    labels[:n_correct] = 0
    return probs, labels


@pytest.mark.parametrize("n_bins", [1, 10, 15, 20])
def test_constant_over_confident_predictor_ece_is_confidence_minus_accuracy(n_bins):
    probs, labels = _constant(0.75, 8, 4)  # dyadic numbers: exact in float64
    assert expected_calibration_error(probs, labels, n_bins) == 0.75 - 0.5
    probs, labels = _constant(0.9, 50, 30, classes=4)
    assert expected_calibration_error(probs, labels, n_bins) == pytest.approx(0.9 - 0.6, abs=1e-12)


def test_perfectly_calibrated_data_has_zero_ece():
    # exact construction: in each confidence group a fraction equal to the confidence is correct
    probs, labels = [], []
    for conf, n, k in ((0.5, 4, 2), (0.625, 8, 5), (0.75, 4, 3), (0.875, 8, 7), (1.0, 3, 3)):
        p, y = _constant(conf, n, k)
        probs.append(p)
        labels.append(y)
    probs, labels = np.concatenate(probs), np.concatenate(labels)
    for n_bins in (4, 8, 15):
        assert expected_calibration_error(probs, labels, n_bins) == pytest.approx(0.0, abs=1e-12)


def test_sampled_calibrated_data_has_ece_near_zero_and_miscalibrated_does_not():
    rng = np.random.default_rng(0)
    n = 200_000
    conf = rng.uniform(0.5, 1.0, n)
    correct = rng.random(n) < conf
    probs = np.stack([conf, 1 - conf], axis=1)
    labels = np.where(correct, 0, 1)
    assert expected_calibration_error(probs, labels) < 0.01
    sharp = np.stack([np.sqrt(conf), 1 - np.sqrt(conf)], axis=1)  # over-confident version
    assert expected_calibration_error(sharp, labels) > 0.05


def test_matches_a_direct_implementation_and_logits_equal_their_softmax():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3.0, size=(1000, 7))
    labels = rng.integers(0, 7, 1000)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    conf, pred = probs.max(1), probs.argmax(1)
    ref = 0.0
    for lo, hi in zip(np.linspace(0, 1, 16)[:-1], np.linspace(0, 1, 16)[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ref += m.mean() * abs((pred[m] == labels[m]).mean() - conf[m].mean())
    assert expected_calibration_error(probs, labels, 15) == pytest.approx(ref, abs=1e-12)
    assert expected_calibration_error(logits, labels, 15) == pytest.approx(ref, abs=1e-12)
    b = reliability_bins(logits, labels, 15)
    assert b.count.sum() == 1000 and b.accuracy.dtype == np.float64


def test_reliability_diagram_shows_bins_and_ece_in_title():
    probs, labels = _constant(0.75, 8, 4)
    fig = calibration(probs, labels, n_bins=4)
    assert "ECE 0.2500" in fig.layout.title.text
    acc = next(t for t in fig.data if t.name == "student")
    assert list(acc.y) == [0.0, 0.0, 0.5, 0.0]  # all samples in (0.5, 0.75]
    gap = next(t for t in fig.data if t.name == "gap")
    assert gap.y[2] == pytest.approx(0.25)
    counts = next(t for t in fig.data if t.name == "samples")
    assert list(counts.y) == [0, 0, 8, 0]
