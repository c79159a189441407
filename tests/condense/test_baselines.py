"""Random real and herding selections: class balance, seeding, and herding's greedy mean tracking."""
from __future__ import annotations

import pytest
import torch

from kdlab.condense.baselines import herding, herding_select, random_real
from kdlab.errors import ConfigError


def test_herding_picks_the_point_at_the_mean_first_then_tracks_it():
    f = torch.tensor([[0.0, 0.0], [2.0, 0.0], [-2.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    order = herding_select(f, 3)
    assert int(order[0]) == 0  # exactly the mean
    assert set(order[1:].tolist()) in ({3, 4}, {1, 2})  # a symmetric pair keeps the running mean at 0
    chosen = f[order[:3]].mean(0)
    assert torch.allclose(chosen, f.mean(0))


def test_herding_beats_random_at_matching_the_mean(digits_train):
    idx_h = herding(digits_train, 3)
    g = torch.Generator().manual_seed(0)
    idx_r = random_real(digits_train, 3, g)

    def err(idx):
        return sum(float((digits_train.x[idx][digits_train.y[idx] == c].mean(0)
                          - digits_train.x[digits_train.y == c].mean(0)).norm()) for c in range(10))
    assert err(idx_h) < err(idx_r)
    assert torch.equal(torch.bincount(digits_train.y[idx_h]), torch.full((10,), 3))


def test_random_real_is_balanced_and_seeded(digits_train):
    a = random_real(digits_train, 2, torch.Generator().manual_seed(5))
    b = random_real(digits_train, 2, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.equal(digits_train.y[a], torch.arange(10).repeat_interleave(2))


def test_ipc_larger_than_a_class_fails_naming_it(digits_train):
    with pytest.raises(ConfigError, match="fewer"):
        random_real(digits_train, 500, torch.Generator())
