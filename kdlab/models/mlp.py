"""Multi-layer perceptron: the simplest student (and the one that differs most from a CNN)."""
from __future__ import annotations

import math

import torch
from torch import nn

from kdlab.models.base import register_model
from kdlab.registry import Param


class MLP(nn.Module):
    """Flatten -> ``depth`` x (Linear, ReLU[, Dropout]) -> Linear. Taps: ``blocks.i`` and ``head``."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], width: int = 256, depth: int = 2,
                 dropout: float = 0.0):
        super().__init__()
        dims = [math.prod(in_shape)] + [width] * depth
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.ReLU(), *([nn.Dropout(dropout)] if dropout else []))
            for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.head = nn.Linear(dims[-1], num_classes)
        self.kdlab_taps = {"stages": [f"blocks.{i}" for i in range(depth)],
                           "embedding": f"blocks.{depth - 1}" if depth else "head", "logits": "head"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


@register_model("mlp", family="mlp", params={
    "width": Param(256, "hidden units per layer", int, 1, 16384),
    "depth": Param(2, "number of hidden layers", int, 0, 32),
    "dropout": Param(0.0, "dropout after each hidden layer", float, 0.0, 0.95),
})
def mlp(num_classes: int, in_shape: tuple[int, int, int], **params) -> nn.Module:
    """MLP student: flattened pixels through ReLU hidden layers."""
    return MLP(num_classes, in_shape, **params)
