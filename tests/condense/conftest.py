"""Small real data for the condensation tests: scikit-learn digits (8x8, 1 channel) and a 3-channel copy."""
from __future__ import annotations

import pytest
import torch

from kdlab.data import ArrayDataset, load

SMALL_NET = {"width": 16, "depth": 2, "norm": "instancenorm", "pool": "avgpool"}


@pytest.fixture(scope="session")
def digits_train() -> ArrayDataset:
    return load("digits", split="train", n_train=400)


@pytest.fixture(scope="session")
def digits_test() -> ArrayDataset:
    return load("digits", split="test")


@pytest.fixture(scope="session")
def rgb_train(digits_train) -> ArrayDataset:
    """A 3-channel dataset (digits tinted per channel), like a user's colour images."""
    tint = torch.tensor([1.0, 0.6, 0.3]).view(1, 3, 1, 1)
    return ArrayDataset(digits_train.x.repeat(1, 3, 1, 1) * tint, digits_train.y, "rgb-digits",
                        list(digits_train.classes))
