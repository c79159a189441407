"""Deep mutual learning: terms against hand-derived values, gradient routing, the teacher is trained."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from kdlab.distill import create_distiller
from kdlab.distill.methods.dml import DML, mutual_losses
from kdlab.distill.optim import build_optimizer

from .helpers import IN, np_ce, np_kd, pair

A = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0]])
B = np.array([[2.0, 1.0, 0.0], [0.5, 0.5, 1.5]])
Y = np.array([1, 2])


@pytest.mark.parametrize("temp", [1.0, 3.0])
def test_mutual_terms_hand_derived(temp):
    terms = mutual_losses(torch.tensor(A), torch.tensor(B), torch.tensor(Y), temp, ce_weight=0.5,
                          kd_weight=2.0)
    assert float(terms["ce"]) == pytest.approx(0.5 * np_ce(A, Y), rel=1e-12)
    assert float(terms["peer_ce"]) == pytest.approx(0.5 * np_ce(B, Y), rel=1e-12)
    assert float(terms["kl"]) == pytest.approx(2.0 * np_kd(B, A, temp), rel=1e-12)
    assert float(terms["peer_kl"]) == pytest.approx(2.0 * np_kd(A, B, temp), rel=1e-12)


def test_identical_networks_have_zero_kl():
    terms = mutual_losses(torch.tensor(A), torch.tensor(A), torch.tensor(Y))
    assert float(terms["kl"]) == pytest.approx(0.0, abs=1e-14)
    assert float(terms["peer_kl"]) == pytest.approx(0.0, abs=1e-14)


def test_each_kl_reaches_only_its_own_network():
    a = torch.tensor(A, requires_grad=True)
    b = torch.tensor(B, requires_grad=True)
    terms = mutual_losses(a, b, torch.tensor(Y))
    terms["kl"].backward()
    assert b.grad is None and torch.isfinite(a.grad).all()
    a.grad = None
    terms["peer_kl"].backward()
    assert a.grad is None and torch.isfinite(b.grad).all()


def _one_step(method: str, teacher, student):
    d = create_distiller(method, teacher, student, IN)
    opt = build_optimizer(d.trainable_parameters(), "sgd", lr=0.1, momentum=0.0)
    d.train()
    _, terms = d.forward_train(torch.randn(4, *IN), torch.tensor([0, 1, 2, 3]))
    opt.zero_grad()
    sum(terms.values()).backward()
    opt.step()
    return d, terms


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_dml_step_trains_both_networks(student):
    assert DML.trains_teacher is True and DML.cacheable is False
    teacher, st = pair(student, conv_width=16)
    t0, s0 = copy.deepcopy(teacher.state_dict()), copy.deepcopy(st.state_dict())
    d, terms = _one_step("dml", teacher, st)
    assert set(terms) == {"ce", "kl", "peer_ce", "peer_kl"}
    assert all(torch.isfinite(v) for v in terms.values())
    assert teacher.training  # the peer trains in training mode
    assert any(not torch.equal(t0[k], v) for k, v in teacher.state_dict().items())
    assert any(not torch.equal(s0[k], v) for k, v in st.state_dict().items())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in teacher.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in st.parameters())


def test_kd_step_leaves_the_teacher_unchanged():
    teacher, st = pair("convnet", conv_width=16)
    t0 = copy.deepcopy(teacher.state_dict())
    d, _ = _one_step("kd", teacher, st)
    assert all(torch.equal(t0[k], v) for k, v in teacher.state_dict().items())
    assert not teacher.training
    assert {id(p) for p in d.trainable_parameters()}.isdisjoint({id(p) for p in teacher.parameters()})
