"""Shared pieces of the method tests: seeded model builders, the gradient and SGD checks, numpy references."""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from kdlab.distill import create_distiller
from kdlab.distill.base import Distiller
from kdlab.models import create

IN = (1, 28, 28)


def pair(student: str = "convnet", conv_width: int = 8) -> tuple[nn.Module, nn.Module]:
    """Seeded teacher (convnet, width 16) and student (convnet of ``conv_width``, or MLP of width 32)."""
    torch.manual_seed(0)
    teacher = create("convnet", 10, IN, width=16)
    return teacher, create(student, 10, IN, width=conv_width if student == "convnet" else 32)


def make(method: str, student: str = "convnet", conv_width: int = 8, **params) -> Distiller:
    """``method`` distilling the seeded ``pair(student, conv_width)``, with ``params``."""
    return create_distiller(method, *pair(student, conv_width), IN, **params)


class Step(NamedTuple):
    """One checked training forward: its batch, the logits it returned and its loss terms."""

    x: torch.Tensor
    y: torch.Tensor
    logits: torch.Tensor
    terms: dict[str, torch.Tensor]


def check_finite_gradients(d: Distiller, terms: set[str], n: int = 6, extra: Sequence[nn.Module] = ()) -> Step:
    """One training forward of ``n`` random samples: the term names, (n, 10) logits, a finite loss, finite
    gradients on every parameter of the student and of each ``extra`` module, none on a frozen teacher."""
    x, y = torch.randn(n, *IN), torch.arange(n)
    d.train()
    logits, got = d.forward_train(x, y)
    assert set(got) == terms and logits.shape == (n, 10)
    loss = sum(got.values())
    loss.backward()
    assert torch.isfinite(loss)
    for module in (d.student, *extra):
        grads = [p.grad for p in module.parameters()]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    if d.teacher is not None and not d.trains_teacher:
        assert all(p.grad is None for p in d.teacher.parameters())
    return Step(x, y, logits, got)


def check_sgd_reduces(d: Distiller, names: Sequence[str], lr: float, steps: int = 6) -> None:
    """SGD on one batch of 8 (teacher outputs computed once) lowers the sum of the ``names`` terms at
    every step, and by more than 10% in all."""
    x, y = torch.randn(8, *IN), torch.arange(8)
    t_out = d.teacher_forward(x)
    opt = torch.optim.SGD(d.trainable_parameters(), lr=lr)
    values = []
    for _ in range(steps):
        _, terms = d.forward_train(x, y, t_out)
        loss = sum((terms[k] for k in names[1:]), terms[names[0]])
        values.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(b < a for a, b in zip(values, values[1:], strict=False)) and values[-1] < 0.9 * values[0]


def np_softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (each row of a matrix, or one vector)."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) of probability vectors over the last axis (one value per row)."""
    return np.sum(p * (np.log(p) - np.log(q)), axis=-1)


def np_kd(p_logits: np.ndarray, q_logits: np.ndarray, temp: float) -> float:
    """Hinton KD: KL(softmax(p / T) || softmax(q / T)) * T^2, averaged over the batch."""
    lp, lq = np_log_softmax(p_logits / temp), np_log_softmax(q_logits / temp)
    return temp**2 * np.mean(np.sum(np.exp(lp) * (lp - lq), axis=1))


def np_ce(logits: np.ndarray, y: np.ndarray) -> float:
    """Cross-entropy of ``logits`` on labels ``y``, averaged over the batch."""
    return -np.mean(np_log_softmax(logits)[np.arange(len(y)), y])


def teacher_twin(d: Distiller) -> Distiller:
    """``d``'s method (default params) distilling ``d``'s teacher into an exact copy of it."""
    twin = create_distiller(d.method_name, d.teacher, create("convnet", 10, IN, width=16), IN)
    twin.student.load_state_dict(d.teacher.state_dict())
    return twin
