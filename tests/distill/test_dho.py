"""DHO: the dual-head mixture against a hand-derived value, its alpha limits, training terms, gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdlab.distill import create_distiller
from kdlab.distill.functional import kl_div
from kdlab.distill.methods.dho import dual_head_log_probs

from .helpers import IN, check_finite_gradients, np_softmax, pair

H_CE = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0]])
H_KD = np.array([[2.0, 1.0, 0.0], [0.5, 0.5, 1.5]])


@pytest.mark.parametrize("alpha,beta", [(0.5, 1.0), (0.3, 2.0), (0.9, 0.5)])
def test_mixture_matches_hand_derived(alpha, beta):
    expected = np.log(alpha * np_softmax(H_CE) + (1 - alpha) * np_softmax(H_KD / beta))
    got = dual_head_log_probs(torch.tensor(H_CE), torch.tensor(H_KD), alpha, beta)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(got.exp().sum(1).numpy(), 1.0, rtol=1e-12)


def test_alpha_limits():
    ce, kd = torch.tensor(H_CE), torch.tensor(H_KD)
    np.testing.assert_allclose(dual_head_log_probs(ce, kd, 1.0, 2.0).exp().numpy(), np_softmax(H_CE),
                               rtol=1e-12)
    np.testing.assert_allclose(dual_head_log_probs(ce, kd, 0.0, 2.0).exp().numpy(), np_softmax(H_KD / 2),
                               rtol=1e-12)


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_inference_alpha_one_is_ce_head_softmax(student):
    teacher, st = pair(student, conv_width=16)
    d = create_distiller("dho", teacher, st, IN, alpha=1.0).eval()
    x = torch.randn(3, *IN)
    with torch.no_grad():
        np.testing.assert_allclose(d(x).exp().numpy(), torch.softmax(st(x), 1).numpy(), rtol=1e-5, atol=1e-7)


def test_inference_mixes_both_heads():
    teacher, st = pair("mlp")
    d = create_distiller("dho", teacher, st, IN, alpha=0.25, infer_temperature=2.0).eval()
    x = torch.randn(3, *IN)
    with torch.no_grad():
        emb = st.blocks[-1](st.blocks[0](x.flatten(1)))  # the MLP's embedding: the head's input
        p = 0.25 * torch.softmax(st(x), 1) + 0.75 * torch.softmax(d.kd_head(emb) / 2.0, 1)
        np.testing.assert_allclose(d(x).numpy(), p.log().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_training_terms_and_gradients(student):
    teacher, st = pair(student, conv_width=16)
    d = create_distiller("dho", teacher, st, IN)
    # finite gradients on the student and the KD head, none on the teacher
    x, y, out, terms = check_finite_gradients(d, {"ce", "kd"}, n=4, extra=[d.kd_head])
    assert not out.requires_grad  # telemetry logits: the deployed mixture, detached
    with torch.no_grad():
        ce_logits, kd_logits = d.heads(x)
        t_logits = teacher(x)
    assert float(terms["ce"].detach()) == pytest.approx(0.5 * float(F.cross_entropy(ce_logits, y)), rel=1e-5)
    assert float(terms["kd"].detach()) == pytest.approx(0.5 * float(kl_div(kd_logits, t_logits, 2.0)),
                                                        rel=1e-5)
    # the CE term does not train the KD head, the KD term does not train the CE head
    d.zero_grad()
    d.forward_train(x, y)[1]["ce"].backward()
    assert d.kd_head.weight.grad is None or float(d.kd_head.weight.grad.abs().sum()) == 0.0
