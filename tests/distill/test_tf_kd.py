"""Teacher-free KD: the virtual teacher and the loss against hand-derived values, gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.distill import create_distiller
from kdlab.distill.methods.tf_kd import TfKD, tf_kd_loss, virtual_teacher
from kdlab.models import create

from .helpers import IN, check_finite_gradients, np_log_softmax

Z = np.array([[1.0, 2.0, 0.5, -0.5], [0.3, -1.0, 2.0, 0.0]])
Y = np.array([1, 3])


def np_virtual(y, k, a, temp):
    p = np.full((len(y), k), (1 - a) / (k - 1))
    p[np.arange(len(y)), y] = a
    p = p ** (1.0 / temp)
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("a,temp", [(0.9, 1.0), (0.99, 1.0), (0.9, 4.0), (0.6, 0.5), (1.0, 3.0)])
def test_virtual_teacher_sums_to_one_and_matches(a, temp):
    p = virtual_teacher(torch.tensor(Y), 4, a, temp, torch.float64)
    np.testing.assert_allclose(p.sum(1).numpy(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(p.numpy(), np_virtual(Y, 4, a, temp), rtol=1e-9, atol=1e-300)
    if temp == 1.0:
        assert float(p[0, 1]) == pytest.approx(a) and float(p[0, 0]) == pytest.approx((1 - a) / 3)


@pytest.mark.parametrize("a,temp", [(0.9, 1.0), (0.8, 3.0)])
def test_tf_kd_loss_hand_derived(a, temp):
    p = np_virtual(Y, 4, a, temp)
    expected = temp**2 * np.mean(np.sum(p * (np.log(p) - np_log_softmax(Z / temp)), axis=1))
    got = tf_kd_loss(torch.tensor(Z), torch.tensor(Y), a, temp)
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_zero_when_student_is_the_virtual_teacher():
    z = torch.tensor(np.log(np_virtual(Y, 4, 0.9, 1.0)))
    for temp in (1.0, 2.5):
        assert float(tf_kd_loss(z, torch.tensor(Y), 0.9, temp)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_teacher_free_distiller_finite_gradients(student):
    assert TfKD.uses_teacher is False
    torch.manual_seed(0)
    st = create(student, 10, IN, width=16 if student == "convnet" else 32)
    d = create_distiller("tf_kd", None, st, IN, correct_prob=0.95, temperature=2.0)
    check_finite_gradients(d, {"ce", "kd"}, n=4)
