"""Small synthetic data and models for trainer tests (fast, learnable, deterministic)."""
from __future__ import annotations

import copy

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


@pytest.fixture(scope="session")
def _trained_teacher() -> torch.nn.Module:
    from kdlab.distill import create_distiller
    from kdlab.distill.trainer import TrainConfig, Trainer

    torch.manual_seed(0)
    teacher = create("convnet", 4, (1, 12, 12), width=8, depth=2, norm="batchnorm")
    d = create_distiller("vanilla", None, teacher, (1, 12, 12))
    Trainer(d, TrainConfig(epochs=3, batch_size=32, lr=0.05, log_every=0)).fit(blobs(192, 0), blobs(64, 1))
    return teacher.eval()


@pytest.fixture
def tiny_teacher(_trained_teacher) -> torch.nn.Module:
    """A small trained CNN teacher (a fresh copy per test: online methods train it further)."""
    return copy.deepcopy(_trained_teacher)
