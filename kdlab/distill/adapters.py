"""Adapters that map a student feature onto the teacher feature's shape (built from probed shapes)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.distill.functional import pool_flatten


class ConvAdapter(nn.Module):
    """1x1 conv + BN, then resize to the teacher's spatial size when it differs (FitNets regressor)."""

    def __init__(self, c_in: int, c_out: int, size: tuple[int, int]):
        super().__init__()
        self.size = size
        self.proj = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return x


def match_teacher(t_feat: torch.Tensor, student_ndim: int) -> torch.Tensor:
    """Reduce a teacher feature to what a student of lower rank can match (e.g. conv map -> vector)."""
    if t_feat.ndim == student_ndim:
        return t_feat
    if t_feat.ndim == 4:
        t_feat = t_feat.mean(dim=(2, 3))
    elif t_feat.ndim == 3:
        t_feat = t_feat.mean(dim=1)
    return t_feat.flatten(1)


def make_adapter(s_shape: Sequence[int], t_shape: Sequence[int]) -> nn.Module:
    """Module mapping a student feature (per-sample ``s_shape``) to the teacher's matched shape.

    Conv -> conv: 1x1 conv + BN (+ resize). Anything else: both sides pooled to vectors, then linear.
    Identity when shapes already agree.
    """
    s_shape, t_shape = tuple(s_shape), tuple(t_shape)
    if s_shape == t_shape:
        return nn.Identity()
    if len(s_shape) == 3 and len(t_shape) == 3:
        return ConvAdapter(s_shape[0], t_shape[0], (t_shape[1], t_shape[2]))
    s_dim = s_shape[0] if len(s_shape) == 3 else s_shape[-1]
    t_dim = t_shape[0] if len(t_shape) == 3 else t_shape[-1]
    return nn.Sequential(PoolFlatten(), nn.Linear(s_dim, t_dim))


class PoolFlatten(nn.Module):
    """Global average pool conv maps / tokens to vectors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_flatten(x)
