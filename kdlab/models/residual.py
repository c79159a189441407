"""Pieces shared by the residual CNNs (CIFAR ResNet, Wide ResNet): the stage builder and the reference init."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn


def residual_stage(block: Callable[..., nn.Module], c_in: int, c_out: int, n: int, stride: int) -> nn.Sequential:
    """``n`` blocks ``block(c_in=, stride=)``: the first from ``c_in`` at ``stride``, the rest from ``c_out`` at 1."""
    return nn.Sequential(*(block(c_in=c_in if i == 0 else c_out, stride=stride if i == 0 else 1) for i in range(n)))


def init_conv_bn_(model: nn.Module) -> None:
    """Reference init: convs Kaiming-normal (fan_out, ReLU), BatchNorm weights 1 and biases 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
