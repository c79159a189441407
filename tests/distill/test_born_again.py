"""Born-again networks: same-architecture check, the KD loss against a hand-derived value, gradients."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from kdlab.distill import create_distiller
from kdlab.distill.methods.born_again import architecture_mismatch
from kdlab.errors import ConfigError
from kdlab.models import create

from .helpers import IN, check_finite_gradients, np_ce, np_kd


def _teacher():
    torch.manual_seed(0)
    return create("convnet", 10, IN, width=16)


def test_same_architecture_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_distiller("born_again", _teacher(), create("convnet", 10, IN, width=16), IN,
                         require_same_arch=True)


@pytest.mark.parametrize("student", [("mlp", 32), ("convnet", 8)])
def test_other_architecture_warns_or_raises(student):
    name, width = student
    assert architecture_mismatch(_teacher(), create(name, 10, IN, width=width)) is not None
    with pytest.warns(UserWarning, match="born_again expects a teacher of the student's architecture"):
        create_distiller("born_again", _teacher(), create(name, 10, IN, width=width), IN)
    with pytest.raises(ConfigError, match="architecture"):
        create_distiller("born_again", _teacher(), create(name, 10, IN, width=width), IN,
                         require_same_arch=True)


def test_loss_hand_derived_and_zero_for_a_copy():
    teacher = _teacher()
    student = create("convnet", 10, IN, width=16)
    d = create_distiller("born_again", teacher, student, IN, temperature=2.0, kd_weight=0.7)
    x, y = torch.randn(3, *IN), torch.tensor([0, 4, 9])
    with torch.no_grad():
        _, terms = d.forward_train(x, y)
        s, t = student(x).double().numpy(), teacher(x).double().numpy()
    kd = 0.7 * np_kd(t, s, 2.0)
    ce = np_ce(s, np.array([0, 4, 9]))
    assert float(terms["kd"]) == pytest.approx(kd, rel=1e-5)
    assert float(terms["ce"]) == pytest.approx(ce, rel=1e-5)

    twin = create_distiller("born_again", teacher, copy.deepcopy(teacher), IN)
    assert float(twin.forward_train(x, y)[1]["kd"]) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("student", ["convnet", "mlp"])
def test_born_again_distiller_finite_gradients(student):
    st = create(student, 10, IN, width=16 if student == "convnet" else 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = create_distiller("born_again", _teacher(), st, IN)
    check_finite_gradients(d, {"ce", "kd"}, n=4)
