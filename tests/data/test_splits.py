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
