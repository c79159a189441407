"""Built-in datasets: fixed stratified splits, value ranges, parameters, determinism."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.data import load
from kdlab.errors import ConfigError


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.tobytes() for r in x.flatten(1).numpy()}


@pytest.fixture(scope="module")
def mnist() -> dict[str, object]:
    return {s: load("mnist5k", split=s) for s in ("train", "val", "test")}


def test_mnist5k_splits(mnist: dict) -> None:
    sizes = {s: len(d) for s, d in mnist.items()}
    assert sizes == {"train": 3500, "val": 500, "test": 1000}
    for d in mnist.values():
        assert d.x.shape[1:] == (1, 28, 28) and d.x.dtype == torch.float32 and d.y.dtype == torch.int64
        assert float(d.x.min()) == 0.0 and float(d.x.max()) == 1.0
        assert torch.bincount(d.y, minlength=10).tolist() == [len(d) // 10] * 10  # 500 per digit, stratified
        assert d.num_classes == 10 and d.in_shape == (1, 28, 28)
    assert not _rows(mnist["train"].x) & _rows(mnist["test"].x)
    assert not _rows(mnist["val"].x) & _rows(mnist["test"].x)


def test_mnist5k_test_split_does_not_depend_on_seed(mnist: dict) -> None:
    other = load("mnist5k", split="test", seed=123)
    assert torch.equal(other.x, mnist["test"].x) and torch.equal(other.y, mnist["test"].y)


def test_n_train_is_a_seeded_stratified_subset(mnist: dict) -> None:
    a = load("mnist5k", n_train=200, seed=1)
    b = load("mnist5k", n_train=200, seed=2)
    assert len(a) == 200 and torch.bincount(a.y).tolist() == [20] * 10
    assert _rows(a.x) <= _rows(mnist["train"].x)
    assert torch.equal(a.x, load("mnist5k", n_train=200, seed=1).x)
    assert not torch.equal(a.x, b.x)
    with pytest.raises(ConfigError, match="params.n_train"):
        load("mnist5k", n_train=3501)


def test_digits_splits_and_range() -> None:
    parts = {s: load("digits", split=s) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in parts.items()} == {"train": 1257, "val": 180, "test": 360}
    full = np.concatenate([d.y.numpy() for d in parts.values()])
    share = np.bincount(full) / len(full)
    for d in parts.values():
        assert np.abs(np.bincount(d.y.numpy(), minlength=10) / len(d) - share).max() < 0.02
        assert d.x.shape[1:] == (1, 8, 8) and 0.0 <= float(d.x.min()) and float(d.x.max()) == 1.0


def test_digits_resized_for_mnist_models() -> None:
    small, big = load("digits", split="val"), load("digits", split="val", size=28, margin=4)
    assert big.x.shape[1:] == (1, 28, 28) and torch.equal(small.y, big.y)
    assert float(big.x[..., :4, :].abs().max()) == 0.0 and float(big.x[..., :, -4:].abs().max()) == 0.0
    assert 0.0 <= float(big.x.min()) and float(big.x.max()) <= 1.0
    # bilinear upsampling keeps the overall brightness of the digit box
    assert abs(float(big.x[..., 4:-4, 4:-4].mean()) - float(small.x.mean())) < 0.03
    with pytest.raises(ConfigError, match="params.size"):
        load("digits", size=2)
    with pytest.raises(ConfigError, match="params.margin"):
        load("digits", size=8, margin=4)
