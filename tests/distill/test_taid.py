"""TAID: the interpolated KL against a hand-derived value, its t = 0 / t = 1 limits, the schedule."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdlab.distill.functional import kl_div
from kdlab.distill.methods.taid import taid_loss, taid_next_t, taid_target

from .helpers import IN, check_finite_gradients, make, np_kl, np_softmax

S = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0]])
T = np.array([[2.0, 1.0, 0.0], [0.5, 0.5, 1.5]])


@pytest.mark.parametrize("t", [0.0, 0.4, 0.75, 1.0])
def test_taid_loss_matches_hand_derived(t):
    p = np_softmax((1 - t) * S + t * T)
    q = np_softmax(S)
    expected = np.mean(np_kl(p, q))
    got = taid_loss(torch.tensor(S), torch.tensor(T), t)
    assert float(got) == pytest.approx(expected, abs=1e-14, rel=1e-12)
    np.testing.assert_allclose(taid_target(torch.tensor(S), torch.tensor(T), t).numpy(), p, rtol=1e-12)


def test_taid_limits():
    s, t = torch.tensor(S), torch.tensor(T)
    assert float(taid_loss(s, t, 0.0)) == pytest.approx(0.0, abs=1e-14)
    assert float(taid_loss(s, t, 1.0)) == pytest.approx(float(kl_div(s, t, 1.0)), rel=1e-12)


def test_taid_target_is_detached_from_student():
    s = torch.tensor(S, requires_grad=True)
    taid_loss(s, torch.tensor(T), 0.5).backward()
    p, q = taid_target(s, torch.tensor(T), 0.5).numpy(), np_softmax(S)
    np.testing.assert_allclose(s.grad.numpy(), (q - p) / len(S), rtol=1e-10)  # d KL / dz_s with p fixed


def test_schedule_update_hand_derived():
    # first step only records the loss
    assert taid_next_t(0.4, 0.0, 1.0, math.inf, 0.1, 0.4, 1.0, 0.1, 0.9) == (0.4, 0.0)
    # adaptive step beats the linear schedule early on
    m = 0.9 * 0.0 + 0.1 * (1.0 - 0.8) / (1.0 + 1e-15)
    t_adaptive = 0.4 + 0.1 * (1 / (1 + math.exp(-m))) * (1 - 0.4)
    t, mom = taid_next_t(0.4, 0.0, 0.8, 1.0, 0.0, 0.4, 1.0, 0.1, 0.9)
    assert mom == pytest.approx(m, rel=1e-12) and t == pytest.approx(t_adaptive, rel=1e-12)
    # the linear schedule is the floor, t_end the ceiling
    t, _ = taid_next_t(0.4, 0.0, 0.8, 1.0, 0.5, 0.4, 1.0, 0.1, 0.9)
    assert t == pytest.approx(0.7, rel=1e-12)
    t, _ = taid_next_t(0.95, 5.0, 0.1, 1.0, 0.5, 0.4, 0.96, 1.0, 0.9)
    assert t == pytest.approx(0.96)


def test_distiller_uses_progress_and_buffers():
    d = make("taid", "mlp", t_start=0.2, t_end=0.9, step_size=0.0)
    x, y = torch.randn(4, *IN), torch.tensor([0, 1, 2, 3])
    d.train()
    d.set_progress(0.0)
    d.forward_train(x, y)  # first step: records J only
    assert float(d.t) == pytest.approx(0.2)
    d.set_progress(0.5)
    d.forward_train(x, y)
    assert float(d.t) == pytest.approx(0.2 + 0.7 * 0.5)
    d.eval()
    d.set_progress(1.0)
    d.forward_train(x, y)  # evaluation does not advance the schedule
    assert float(d.t) == pytest.approx(0.55)
    assert {"t", "momentum", "prev_loss"} <= set(d.state_dict())


def test_t_end_below_t_start_is_rejected():
    from kdlab.errors import ConfigError
    with pytest.raises(ConfigError):
        make("taid", "mlp", t_start=0.8, t_end=0.5)


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_taid_distiller_finite_gradients(student):
    check_finite_gradients(make("taid", student, conv_width=16), {"ce", "kd"}, n=4)
