"""Training-free student ranking: relation matrices, the identical-student limit, the ranked table."""
from __future__ import annotations

import copy

import pytest
import torch

from kdlab.analysis.student_choice import rank_students, relation_distance, relation_matrix
from kdlab.data import load
from kdlab.errors import ConfigError, UnknownNameError
from kdlab.models import create


@pytest.fixture(scope="module")
def digits():
    return load("digits", split="train", n_train=200)


def test_relation_matrix_rows_are_unit_and_scale_free():
    f = torch.randn(16, 30, dtype=torch.float64)
    r = relation_matrix(f)
    assert torch.allclose(r.norm(dim=1), torch.ones(16, dtype=torch.float64))
    assert torch.allclose(relation_matrix(5 * f), r)
    assert relation_distance(f, 3 * f) == pytest.approx(0.0, abs=1e-20)
    assert relation_distance(f, torch.randn(16, 30, dtype=torch.float64)) > 1e-3


def test_rank_students_puts_the_teachers_twin_first(digits):
    torch.manual_seed(0)
    teacher = create("convnet", 10, digits.in_shape, width=8, depth=2)
    twin = copy.deepcopy(teacher)
    cands = {"twin": lambda: copy.deepcopy(twin), "mlp": {"name": "mlp", "params": {"width": 32}},
             "vit": {"name": "vit_tiny", "params": {"dim": 16, "depth": 1, "heads": 2}}}
    df = rank_students(teacher, cands, digits, n_samples=64, seeds=(0, 1))
    assert list(df["rank"]) == [1, 2, 3] and df.iloc[0]["candidate"] == "twin"
    assert df.iloc[0]["relation"] == pytest.approx(0.0, abs=1e-20)
    assert df.iloc[0]["cka"] == pytest.approx(1.0, abs=1e-9)
    assert (df["relation"].diff().dropna() >= 0).all()
    by_cka = rank_students(teacher, cands, digits, n_samples=64, seeds=(0,), metric="cka")
    assert by_cka.iloc[0]["candidate"] == "twin" and (by_cka["cka"].diff().dropna() <= 0).all()


def test_bad_candidates_fail_up_front(digits):
    teacher = create("mlp", 10, digits.in_shape, width=8)
    with pytest.raises(UnknownNameError):
        rank_students(teacher, {"x": "no_such_model"}, digits)
    with pytest.raises(ConfigError, match="metric"):
        rank_students(teacher, {"x": "mlp"}, digits, metric="acc")
    with pytest.raises(ConfigError):
        rank_students(teacher, {}, digits)
