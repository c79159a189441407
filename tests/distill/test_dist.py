"""DIST: hand-derived inter/intra Pearson relation losses, limits and invariances, gradients, training."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdlab.distill import create_distiller
from kdlab.distill.methods.dist import dist_loss, dist_terms
from kdlab.models import create

IN = (1, 28, 28)
S = np.array([[1.0, 2.0, 0.5, -0.5], [0.3, -1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
T = np.array([[2.0, 1.0, 0.0, 0.5], [0.5, 0.5, 1.5, -1.0], [3.0, -2.0, 0.0, 0.0]])


def np_softmax_rows(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_pearson(a: list[float], b: list[float]) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    num = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    den = math.sqrt(sum((x - ma) ** 2 for x in a)) * math.sqrt(sum((y - mb) ** 2 for y in b))
    return num / (den + 1e-8)


def np_dist(s, t, beta, gamma, tau):
    ps, pt = np_softmax_rows(s / tau), np_softmax_rows(t / tau)
    n, c = ps.shape
    inter = 1 - sum(np_pearson(list(ps[i]), list(pt[i])) for i in range(n)) / n
    intra = 1 - sum(np_pearson(list(ps[:, k]), list(pt[:, k])) for k in range(c)) / c
    return tau**2 * inter, tau**2 * intra, tau**2 * (beta * inter + gamma * intra)


@pytest.mark.parametrize("beta,gamma,tau", [(1.0, 1.0, 1.0), (2.0, 2.0, 4.0), (0.5, 3.0, 0.5)])
def test_dist_loss_matches_hand_derived(beta, gamma, tau):
    inter, intra, total = np_dist(S, T, beta, gamma, tau)
    s, t = torch.tensor(S), torch.tensor(T)
    got_inter, got_intra = dist_terms(s, t, tau)
    assert float(got_inter) == pytest.approx(inter, rel=1e-10)
    assert float(got_intra) == pytest.approx(intra, rel=1e-10)
    assert float(dist_loss(s, t, beta, gamma, tau)) == pytest.approx(total, rel=1e-10)


def test_dist_limits_and_invariances():
    s, t = torch.tensor(S), torch.tensor(T)
    # identical predictions: perfectly correlated, both losses 0 (up to the 1e-8 in rho's denominator)
    inter, intra = dist_terms(t, t, 2.0)
    assert 0.0 <= float(inter) < 1e-5 and 0.0 <= float(intra) < 1e-5
    # a per-sample logit shift leaves softmax and so the loss unchanged
    shift = torch.tensor([[3.0], [-1.0], [10.0]], dtype=torch.float64)
    assert float(dist_loss(s + shift, t, 1.0, 1.0, 1.0)) == pytest.approx(float(dist_loss(s, t, 1, 1, 1)),
                                                                           rel=1e-10)
    # relations are bounded: 1 - rho lies in [0, 2]
    inter, intra = dist_terms(s, t, 1.0)
    assert 0.0 <= float(inter) <= 2.0 and 0.0 <= float(intra) <= 2.0


def _make(student: str = "convnet", **params):
    torch.manual_seed(0)
    teacher = create("convnet", 10, IN, width=16)
    st = create(student, 10, IN, width=8 if student == "convnet" else 32)
    return create_distiller("dist", teacher, st, IN, **params)


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_dist_distiller_finite_gradients(student):
    d = _make(student)
    x, y = torch.randn(6, *IN), torch.tensor([0, 1, 2, 3, 4, 5])
    d.train()
    logits, terms = d.forward_train(x, y)
    assert set(terms) == {"ce", "inter", "intra"} and logits.shape == (6, 10)
    loss = sum(terms.values())
    loss.backward()
    grads = [p.grad for p in d.student.parameters()]
    assert torch.isfinite(loss) and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_dist_sgd_steps_reduce_the_distillation_term():
    d = _make("mlp", ce_weight=0.0)
    x, y = torch.randn(8, *IN), torch.arange(8)
    t_out = d.teacher_forward(x)
    opt = torch.optim.SGD(d.trainable_parameters(), lr=0.1)
    values = []
    for _ in range(6):
        _, terms = d.forward_train(x, y, t_out)
        loss = terms["inter"] + terms["intra"]
        values.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(b < a for a, b in zip(values, values[1:], strict=False)) and values[-1] < 0.9 * values[0]
