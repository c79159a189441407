from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from kdlab.errors import ShapeError
from kdlab.viz import confusion_counts, confusion_matrix, per_class_accuracy, per_class_gap
from kdlab.viz.theme import STUDENT, TEACHER


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 400)
    logits = rng.normal(size=(400, 5))
    logits[np.arange(400), y] += rng.uniform(0, 2, 400)  # better than chance, unevenly per class
    return y, logits


def test_counts_equal_sklearn_and_normalised_rows_sum_to_one(data):
    y, logits = data
    preds = logits.argmax(1)
    ref = sk_confusion_matrix(y, preds, labels=range(5))
    assert np.array_equal(confusion_counts(logits, y), ref)
    raw = confusion_matrix(preds, y, normalize=False)
    assert np.array_equal(np.asarray(raw.data[0].z), ref)
    norm = confusion_matrix(logits, y, class_names=list("abcde"))
    z = np.asarray(norm.data[0].z, dtype=float)
    assert np.allclose(z.sum(axis=1), 1.0)
    assert np.allclose(z, ref / ref.sum(axis=1, keepdims=True))
    assert np.array_equal(np.asarray(norm.data[0].customdata), ref)
    assert list(norm.data[0].x) == list("abcde") and list(norm.data[0].y) == list("abcde")


def test_classes_without_samples_give_zero_rows_not_nan():
    y = np.array([0, 0, 2])
    z = np.asarray(confusion_matrix(np.array([0, 1, 2]), y, class_names=["a", "b", "c"]).data[0].z)
    assert z.tolist() == [[0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]


def test_per_class_gap_equals_hand_computed_accuracies():
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    teacher = np.array([0, 0, 1, 1, 0, 2, 2, 2, 1])   # class acc 1, 2/3, 3/4
    student = np.array([0, 1, 1, 0, 0, 2, 2, 0, 1])   # class acc 1/2, 1/3, 2/4
    fig = per_class_gap(teacher, student, labels, class_names=["zero", "one", "two"])
    by = {t.name: t for t in fig.data}
    assert np.allclose(by["teacher"].y, [1, 2 / 3, 3 / 4])
    assert np.allclose(by["student"].y, [1 / 2, 1 / 3, 2 / 4])
    assert np.allclose(by["gap"].y, [1 / 2, 1 / 3, 1 / 4])
    assert list(by["teacher"].x) == ["zero", "one", "two"]
    assert by["teacher"].marker.color == TEACHER and by["student"].marker.color == STUDENT
    assert "teacher 0.7778" in fig.layout.title.text and "student 0.4444" in fig.layout.title.text


def test_per_class_gap_takes_logits_and_tensors(data):
    torch = pytest.importorskip("torch")
    y, logits = data
    student = logits + np.random.default_rng(1).normal(scale=2.0, size=logits.shape)
    fig = per_class_gap(torch.from_numpy(logits), student, torch.from_numpy(y))
    acc_t = per_class_accuracy(logits.argmax(1), y)
    acc_s = per_class_accuracy(student.argmax(1), y)
    assert np.allclose(fig.data[0].y, acc_t) and np.allclose(fig.data[2].y, acc_t - acc_s)
    for c in range(5):
        assert acc_t[c] == pytest.approx(np.mean(logits.argmax(1)[y == c] == c))


def test_empty_class_is_nan_and_lengths_must_match():
    acc = per_class_accuracy(np.array([0, 0]), np.array([0, 2]), num_classes=3)
    assert acc[0] == 1.0 and np.isnan(acc[1]) and acc[2] == 0.0
    with pytest.raises(ShapeError, match="lengths"):
        per_class_gap(np.array([0, 1]), np.array([0]), np.array([0, 1]))
    with pytest.raises(ShapeError, match="class_names"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), class_names=["a", "b"])
