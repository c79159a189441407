"""Shared base of the methods that compare conv feature maps (AT, NST): both sides must give (C, H, W) maps."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from kdlab.distill.base import Distiller
from kdlab.errors import ConfigError

#: Methods that distil between models of different families (CNN teacher -> MLP / ViT student).
CROSS_ARCHITECTURE = ("kd", "dkd", "dist", "lskd", "sinkhorn_kd", "fitnets (pooled adapters)", "rkd", "pkt")


def require_spatial(method: str, model_name: str, shapes: dict[str, tuple[int, ...]]) -> None:
    """Raise ConfigError unless every tapped feature is a (C, H, W) map."""
    bad = {p: s for p, s in shapes.items() if len(s) != 3}
    if bad:
        path, shape = next(iter(bad.items()))
        raise ConfigError(
            f"{method} needs spatial feature maps (N, C, H, W) from both teacher and student, but the "
            f"{model_name}'s layer {path!r} gives per-sample shape {shape}. Choose conv layers via "
            f"teacher_layers/student_layers, or use a method that works across architectures: "
            f"{', '.join(CROSS_ARCHITECTURE)}")


class SpatialDistiller(Distiller):
    """A feature method on the stages' conv maps; a model without spatial maps raises ConfigError."""

    feature_kind = "stages"

    def __init__(self, teacher: nn.Module | None, student: nn.Module, in_shape: Sequence[int], **params: Any):
        super().__init__(teacher, student, in_shape, **params)
        require_spatial(self.method_name, "student", self.student_shapes)
        require_spatial(self.method_name, "teacher", self.teacher_shapes)
