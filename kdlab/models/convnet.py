"""ConvNet-D, the dataset-distillation benchmark network (Gidaris & Komodakis 2018; Zhao et al. 2021):
D blocks of conv3x3(width) -> norm -> ReLU -> pool, then a linear classifier."""
from __future__ import annotations

import torch
from torch import nn

from kdlab.models.base import register_model
from kdlab.registry import Param

NORMS = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
POOLS = ("avgpool", "maxpool", "none")


class InstanceNorm(nn.GroupNorm):
    """Affine instance norm as ``GroupNorm(C, C)`` (the reference code's). A channels-last map of at most 16x16
    is normalised as a contiguous copy: PyTorch's channels-last CPU kernel is ~15x slower there (bench_condense)."""

    def __init__(self, c: int):
        super().__init__(c, c, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4 and x.shape[-1] * x.shape[-2] <= 256 and not x.is_contiguous():
            x = x.contiguous()
        return super().forward(x)


def _norm(kind: str, c: int, hw: int) -> nn.Module:
    if kind == "instancenorm":
        return InstanceNorm(c)
    if kind == "batchnorm":
        return nn.BatchNorm2d(c)
    if kind == "layernorm":
        return nn.LayerNorm([c, hw, hw], elementwise_affine=True)
    if kind == "groupnorm":
        return nn.GroupNorm(4 if c % 4 == 0 else 1, c, affine=True)
    return nn.Identity()


class ConvNet(nn.Module):
    """ConvNet-``depth``. The first conv pads so the map halves evenly (28x28 -> 32x32, as in DC)."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], width: int = 128, depth: int = 3,
                 norm: str = "instancenorm", pool: str = "avgpool"):
        super().__init__()
        c, h, _ = in_shape
        step = 2 ** depth if pool != "none" else 1
        extra = (-h) % step
        pad = 1 + extra // 2 if extra % 2 == 0 else 1
        layers, size = [], h + 2 * pad - 2
        for d in range(depth):
            block = [nn.Conv2d(c if d == 0 else width, width, 3, padding=pad if d == 0 else 1),
                     _norm(norm, width, size), nn.ReLU(inplace=True)]
            if pool != "none" and size >= 2:
                block.append(nn.AvgPool2d(2) if pool == "avgpool" else nn.MaxPool2d(2))
                size //= 2
            layers.append(nn.Sequential(*block))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * size * size, num_classes)
        self.kdlab_taps = {"stages": [f"features.{i}" for i in range(depth)],
                           "embedding": f"features.{depth - 1}", "logits": "classifier"}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened output of the last block (the feature used by dataset distillation)."""
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


@register_model("convnet", family="cnn", params={
    "width": Param(128, "channels of every conv layer", int, 1, 4096),
    "depth": Param(3, "number of conv blocks", int, 1, 8),
    "norm": Param("instancenorm", "normalisation after each conv", str, choices=NORMS),
    "pool": Param("avgpool", "pooling after each block", str, choices=POOLS),
})
def convnet(num_classes: int, in_shape: tuple[int, int, int], **params) -> nn.Module:
    """ConvNet-D (dataset-distillation benchmark CNN), width/norm/pool configurable."""
    return ConvNet(num_classes, in_shape, **params)
