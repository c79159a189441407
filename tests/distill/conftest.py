"""Small synthetic data and models for trainer tests (fast, learnable, deterministic)."""
from __future__ import annotations

import pytest
import torch

from kdlab.data import ArrayDataset
from kdlab.models import create


def blobs(n: int, seed: int, classes: int = 4, side: int = 12) -> ArrayDataset:
    """Images whose class is a bright quadrant-like patch plus noise: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = 0.3 * torch.rand(n, 1, side, side, generator=g)
    half = side // 2
    for c in range(classes):
        r, q = divmod(c, 2)
        x[y == c, :, r * half:(r + 1) * half, q * half:(q + 1) * half] += 0.6
    return ArrayDataset(x.clamp(0, 1), y, name="blobs")


@pytest.fixture
def tiny_data() -> tuple[ArrayDataset, ArrayDataset]:
    return blobs(192, 0), blobs(64, 1)


@pytest.fixture
def tiny_teacher() -> torch.nn.Module:
    torch.manual_seed(0)
    return create("convnet", 4, (1, 12, 12), width=8, depth=2, norm="batchnorm")
