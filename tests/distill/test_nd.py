"""ND (KD++): the loss against a hand-derived value, limits, class-mean buffers, gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.distill import create_distiller
from kdlab.distill.functional import pool_flatten
from kdlab.distill.methods.nd import class_means, nd_loss
from kdlab.models import create

IN = (1, 28, 28)
S = np.array([[1.0, 2.0, -0.5], [0.3, -1.0, 2.0], [4.0, 0.0, 1.0]])
T = np.array([[2.0, 1.0, 0.0], [0.5, 0.5, 1.5], [0.1, 0.2, 0.3]])
C = np.array([[1.0, 1.0, 0.0], [0.0, -2.0, 1.0]])
Y = np.array([0, 1, 0])


def np_nd(s, t, c, y):
    total = 0.0
    for i in range(len(y)):
        e = c[y[i]] / np.sqrt(c[y[i]] @ c[y[i]])
        total += 1.0 - (s[i] @ e) / max(np.sqrt(s[i] @ s[i]), np.sqrt(t[i] @ t[i]))
    return total / len(y)


def test_nd_loss_matches_hand_derived():
    got = nd_loss(torch.tensor(S), torch.tensor(T), torch.tensor(C), torch.tensor(Y))
    assert float(got) == pytest.approx(np_nd(S, T, C, Y), rel=1e-12)


def test_nd_loss_zero_when_student_equals_teacher_on_class_direction():
    c = torch.tensor(C)
    y = torch.tensor(Y)
    t = 3.0 * c[y] / c[y].norm(dim=1, keepdim=True)
    assert float(nd_loss(t.clone(), t, c, y)) == pytest.approx(0.0, abs=1e-12)
    # a larger-norm student on the class direction is also at 0 (cosine part); a smaller one is not
    assert float(nd_loss(2 * t, t, c, y)) == pytest.approx(0.0, abs=1e-12)
    assert float(nd_loss(0.5 * t, t, c, y)) == pytest.approx(0.5, abs=1e-12)


def test_class_means():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0]], dtype=torch.float64)
    means, counts = class_means(f, torch.tensor([1, 1, 2]), 4)
    np.testing.assert_allclose(means.numpy(), [[0, 0], [2, 3], [10, 0], [0, 0]])
    np.testing.assert_allclose(counts.numpy(), [0, 2, 1, 0])


def _pair(student: str):
    torch.manual_seed(0)
    teacher = create("convnet", 10, IN, width=16)
    return teacher, create(student, 10, IN, width=8 if student == "convnet" else 32)


def test_nd_centers_running_mean_and_ema():
    teacher, student = _pair("convnet")
    d = create_distiller("nd", teacher, student, IN)
    xs = [torch.randn(4, *IN) for _ in range(2)]
    ys = [torch.tensor([0, 1, 1, 3]), torch.tensor([1, 3, 3, 3])]
    d.train()
    for x, y in zip(xs, ys, strict=True):
        d.forward_train(x, y)
    feats = torch.cat([pool_flatten(d.teacher_forward(x).features[d.teacher_layers[0]]) for x in xs]).double()
    labels = torch.cat(ys)
    for c in (0, 1, 3):
        np.testing.assert_allclose(d.centers[c].double().numpy(), feats[labels == c].mean(0).numpy(),
                                   rtol=1e-5, atol=1e-6)
    assert float(d.centers[2].abs().sum()) == 0.0
    np.testing.assert_allclose(d.counts.numpy(), [1, 3, 0, 4, 0, 0, 0, 0, 0, 0])

    e = create_distiller("nd", *_pair("convnet"), IN, center_momentum=0.5)
    e.train()
    for x, y in zip(xs, ys, strict=True):
        e.forward_train(x, y)
    f1, f2 = feats[:4], feats[4:]
    expected = 0.5 * f1[1:3].mean(0) + 0.5 * f2[0:1].mean(0)  # class 1: first-batch mean, then EMA
    np.testing.assert_allclose(e.centers[1].double().numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)

    frozen = torch.randn(10, d.centers.shape[1])
    d.set_class_centers(frozen)
    d.forward_train(xs[0], ys[0])
    assert torch.equal(d.centers, frozen)
    assert "centers" in d.state_dict() and "counts" in d.state_dict()


def test_nd_eval_mode_leaves_centers():
    d = create_distiller("nd", *_pair("mlp"), IN)
    d.eval()
    d.forward_train(torch.randn(2, *IN), torch.tensor([0, 1]))
    assert float(d.counts.sum()) == 0.0


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_nd_distiller_finite_gradients(student):
    teacher, st = _pair(student)
    d = create_distiller("nd", teacher, st, IN)
    d.train()
    logits, terms = d.forward_train(torch.randn(4, *IN), torch.tensor([0, 1, 2, 3]))
    assert set(terms) == {"ce", "kd", "nd"}
    loss = sum(terms.values())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in st.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in d.adapters.parameters())
