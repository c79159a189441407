"""PKT: hand-derived cosine-kernel density KL, zero for matching similarity structure, training."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdlab.distill import create_distiller
from kdlab.distill.methods.pkt import pkt_loss
from kdlab.models import create

IN = (1, 28, 28)
RNG = np.random.default_rng(4)
ES = RNG.normal(size=(4, 3))
ET = RNG.normal(size=(4, 6))
EPS = 1e-7


def np_densities(e: np.ndarray) -> list[list[float]]:
    n = len(e)
    unit = [row / (math.sqrt(sum(v * v for v in row)) + EPS) for row in e]
    k = [[(float(np.dot(unit[i], unit[j])) + 1) / 2 for j in range(n)] for i in range(n)]
    return [[k[i][j] / sum(k[i]) for j in range(n)] for i in range(n)]


def np_pkt(s: np.ndarray, t: np.ndarray) -> float:
    ps, pt = np_densities(s), np_densities(t)
    n = len(s)
    return sum(pt[i][j] * math.log((pt[i][j] + EPS) / (ps[i][j] + EPS))
               for i in range(n) for j in range(n)) / n**2


def test_pkt_loss_matches_hand_derived():
    assert float(pkt_loss(torch.tensor(ES), torch.tensor(ET))) == pytest.approx(np_pkt(ES, ET), rel=1e-10)


def test_pkt_zero_for_identical_and_invariant_to_scale_and_rotation():
    s, t = torch.tensor(ES), torch.tensor(ET)
    assert float(pkt_loss(t, t)) == 0.0
    base = float(pkt_loss(s, t))
    assert base > 0
    q, _ = torch.linalg.qr(torch.tensor(RNG.normal(size=(3, 3))))
    per_sample = torch.tensor([[0.5], [2.0], [9.0], [3.0]], dtype=torch.float64)
    # only cosines enter (up to the 1e-7 added to each norm)
    assert float(pkt_loss(per_sample * (s @ q), t)) == pytest.approx(base, rel=1e-5)


def _make(student: str = "convnet", **params):
    torch.manual_seed(0)
    teacher = create("convnet", 10, IN, width=16)
    st = create(student, 10, IN, width=8 if student == "convnet" else 32)
    return create_distiller("pkt", teacher, st, IN, **params)


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_pkt_distiller_finite_gradients(student):
    d = _make(student)
    x, y = torch.randn(6, *IN), torch.tensor([0, 1, 2, 3, 4, 5])
    d.train()
    logits, terms = d.forward_train(x, y)
    assert set(terms) == {"ce", "pkt"} and logits.shape == (6, 10)
    loss = sum(terms.values())
    loss.backward()
    grads = [p.grad for p in d.student.parameters()]
    assert torch.isfinite(loss) and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_pkt_distiller_zero_for_a_copy_of_the_teacher():
    d = _make()
    twin = create_distiller("pkt", d.teacher, create("convnet", 10, IN, width=16), IN)
    twin.student.load_state_dict(d.teacher.state_dict())
    _, terms = twin.forward_train(torch.randn(5, *IN), torch.arange(5))
    assert terms["pkt"].item() == pytest.approx(0.0, abs=1e-6)


def test_pkt_sgd_steps_reduce_the_divergence():
    d = _make("mlp", ce_weight=0.0, feat_weight=100.0)
    x, y = torch.randn(8, *IN), torch.arange(8)
    t_out = d.teacher_forward(x)
    opt = torch.optim.SGD(d.trainable_parameters(), lr=0.5)
    values = []
    for _ in range(6):
        _, terms = d.forward_train(x, y, t_out)
        values.append(terms["pkt"].item())
        opt.zero_grad()
        terms["pkt"].backward()
        opt.step()
    assert all(b < a for a, b in zip(values, values[1:], strict=False)) and values[-1] < 0.9 * values[0]
