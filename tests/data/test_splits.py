"""Stratified splitting: exact sizes, disjoint parts, class proportions kept, fixed order."""
from __future__ import annotations

import numpy as np
import pytest

from kdlab.data.splits import allocate, resolve_size, stratified_split, stratified_subset
from kdlab.errors import ConfigError


def test_split_sizes_disjoint_and_complete() -> None:
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    train, val, test = stratified_split(y, 10, 25)
    assert (len(train), len(val), len(test)) == (65, 10, 25)
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert sorted(np.concatenate([train, val, test])) == list(range(len(y)))


def test_split_keeps_class_proportions() -> None:
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    train, val, test = stratified_split(y, 20, 40)
    share = np.bincount(y) / len(y)
    for part in (train, val, test):
        got = np.bincount(y[part], minlength=4) / len(part)
        assert np.abs(got - share).max() <= 1.0 / len(part) + 1e-9


def test_split_is_fixed_and_mixed() -> None:
    y = np.repeat(np.arange(3), 20)
    a, b = stratified_split(y, 6, 6), stratified_split(y, 6, 6)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert len(set(y[a[0][:10]])) > 1  # shuffled, not grouped by class


def test_allocate_largest_remainder() -> None:
    take = allocate(np.array([5, 3, 2]), 5)
    assert take.sum() == 5 and (take <= [5, 3, 2]).all()
    assert list(allocate(np.array([1, 1]), 0)) == [0, 0]
    with pytest.raises(ConfigError, match="larger than"):
        allocate(np.array([1, 1]), 3)


def test_subset_depends_on_seed_and_is_stratified() -> None:
    y = np.repeat(np.arange(5), 20)
    a, b = stratified_subset(y, 25, 0), stratified_subset(y, 25, 1)
    assert len(a) == 25 and np.bincount(y[a]).tolist() == [5] * 5
    assert not np.array_equal(a, b)
    assert np.array_equal(a, stratified_subset(y, 25, 0))


def test_resolve_size_counts_fractions_and_errors() -> None:
    assert resolve_size(0.1, 200, "val_size") == 20 and resolve_size(7, 200, "val_size") == 7
    with pytest.raises(ConfigError, match=r"val_size: a fraction must be in \[0, 1\)"):
        resolve_size(1.5, 10, "val_size")
    with pytest.raises(ConfigError, match="test_size: 11 is outside"):
        resolve_size(11, 10, "test_size")


def test_cycle_batches_gives_the_asked_steps_reshuffling_every_epoch() -> None:
    import torch

    from kdlab.data.base import ArrayDataset, cycle_batches

    data = ArrayDataset(torch.zeros(10, 1, 2, 2), torch.arange(10) % 2, "ten", ["a", "b"])
    batches = [idx.tolist() for _x, _y, idx in cycle_batches(data, 4, 5, seed=0)]
    assert len(batches) == 5 and all(len(b) == 4 for b in batches)  # 2 full batches an epoch, the 2 left dropped
    first, second = batches[0] + batches[1], batches[2] + batches[3]
    assert len(set(first)) == 8 and len(set(second)) == 8 and first != second  # each epoch its own shuffle
    kept = [idx.tolist() for _x, _y, idx in cycle_batches(data, 4, 3, seed=0, drop_last=False)]
    assert sorted(sum(kept, [])) == list(range(10))  # without drop_last an epoch covers every sample
    small = [len(idx) for _x, _y, idx in cycle_batches(data, 16, 2, seed=0)]
    assert small == [10, 10]  # data smaller than a batch: whole-data batches, not none
    again = [idx.tolist() for _x, _y, idx in cycle_batches(data, 4, 5, seed=0)]
    assert again == batches
