"""The shift benchmark's targets: every split carries the same shifts, label shifts make the stated tasks, the label
budget is per class and seed-chosen, and bad names or budgets are refused with the valid choices."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.data import load
from kdlab.errors import ConfigError
from kdlab.shift.targets import BENCHMARK_TARGETS, TARGETS, benchmark_target, list_targets, target_split


def test_eight_distinct_targets_of_shifts_combinations_subsets_relabellings_and_sizes():
    assert len(BENCHMARK_TARGETS) >= 8 and len({repr(t.shifts) for t in BENCHMARK_TARGETS}) == len(BENCHMARK_TARGETS)
    used = {s[0] for t in BENCHMARK_TARGETS for s in t.shifts}
    assert {"invert", "rotate", "blur", "noise", "edge", "zoom", "subset", "relabel"} <= used
    assert any(len(t.shifts) >= 2 for t in BENCHMARK_TARGETS)  # combinations of shifts
    assert list(list_targets()["target"]) == list(TARGETS)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_every_split_is_shifted_the_same_way(split):
    plain = load("digits", split=split, seed=0, size=28)
    inv = target_split("digits_invert", split, 0)
    torch.testing.assert_close(inv.x, 1.0 - plain.x)
    assert torch.equal(inv.y, plain.y) and inv.name == "digits_invert"


def test_label_shifts_make_the_stated_tasks():
    plain = load("digits", split="test", seed=0, size=28)
    parity = target_split("digits_parity_rot45", "test", 0)
    assert parity.num_classes == 2 and torch.equal(parity.y, plain.y % 2)
    five = target_split("digits_0to4_invert", "test", 0)
    keep = plain.y < 5
    assert five.num_classes == 5 and torch.equal(five.y, plain.y[keep])
    torch.testing.assert_close(five.x, 1.0 - plain.x[keep])


def test_label_budget_is_per_class_seeded_and_the_rest_is_unlabelled():
    a, b = benchmark_target("digits_small", 3, seed=0), benchmark_target("digits_small", 3, seed=1)
    assert np.bincount(a.labelled.y.numpy()).tolist() == [3] * 10
    assert len(a.labelled) + len(a.unlabelled) == len(target_split("digits_small", "train", 0))
    assert not torch.equal(a.labelled.x, b.labelled.x)  # the seed picks the labelled images
    again = benchmark_target("digits_small", 3, seed=0)
    assert torch.equal(a.labelled.x, again.labelled.x) and torch.equal(a.test.x, again.test.x)
    # no labelled image is also in the unlabelled pool
    flat = lambda d: {bytes(r.numpy().tobytes()) for r in d.x}  # noqa: E731
    assert not flat(a.labelled) & flat(a.unlabelled)


def test_bad_target_and_budget_are_refused_with_the_valid_choices():
    with pytest.raises(KeyError, match="digits_invert"):
        benchmark_target("digits_inverted")
    with pytest.raises(ConfigError, match="labels_per_class"):
        benchmark_target("digits", 0)
    with pytest.raises(ConfigError, match="labels_per_class"):
        benchmark_target("digits", 10_000)
