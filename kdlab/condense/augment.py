"""Differentiable siamese augmentation (DSA, Zhao & Bilen 2021): the same random transform on real and
synthetic images, differentiable with respect to the synthetic pixels.

Parameters are drawn once (``sample``) and applied to any batch (``apply``); ``take`` copies the parameters
of chosen real samples onto the synthetic ones, which is what makes the augmentation siamese. As in the
reference code, each call (each class batch) uses ONE operation drawn from the strategy, with per-sample
magnitudes; ``group`` says which samples share that draw.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdlab.errors import ConfigError

OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"
# magnitudes of the reference ParamDiffAug
BRIGHTNESS, SATURATION, CONTRAST = 1.0, 2.0, 0.5
CROP_PAD, CUTOUT, SCALE, ROTATE_DEG = 0.125, 0.5, 1.2, 15.0


def parse_strategy(strategy: str) -> tuple[str, ...]:
    """The operations of ``strategy`` ("color_crop_..."); '' or 'none' is no augmentation."""
    if strategy in ("", "none"):
        return ()
    ops = tuple(strategy.split("_"))
    bad = [o for o in ops if o not in OPS]
    if bad:
        raise ConfigError(f"dsa_strategy: unknown operation(s) {bad}; valid: {list(OPS)} joined by '_'")
    return ops


@dataclass
class DSAParams:
    """One draw: the operation per sample (index into ``ops``) and three uniforms per sample."""

    ops: tuple[str, ...]
    op: torch.Tensor  # (N,) long
    u: torch.Tensor  # (N, 3) float in [0, 1)

    def take(self, index: torch.Tensor) -> DSAParams:
        """The parameters of samples ``index`` (gives synthetic images the draw of chosen real ones)."""
        return DSAParams(self.ops, self.op[index], self.u[index])


def sample(n: int, ops: tuple[str, ...], generator: torch.Generator, group: torch.Tensor | None = None) -> DSAParams:
    """Draw parameters for ``n`` samples; samples with the same ``group`` id share the operation."""
    u = torch.rand(n, 3, generator=generator)
    if group is None:
        group = torch.zeros(n, dtype=torch.long)
    n_groups = int(group.max()) + 1 if n else 0
    per_group = torch.randint(0, max(len(ops), 1), (n_groups,), generator=generator)
    return DSAParams(ops, per_group[group] if n else torch.zeros(0, dtype=torch.long), u)


def apply(x: torch.Tensor, p: DSAParams) -> torch.Tensor:
    """Augment ``x`` (N, C, H, W) with the drawn parameters (differentiable in ``x``)."""
    if not p.ops or len(x) == 0:
        return x
    if len(p.op) != len(x):
        raise ConfigError(f"dsa: {len(p.op)} parameter rows for a batch of {len(x)} images")
    out = x
    for k, name in enumerate(p.ops):
        idx = (p.op == k).nonzero().flatten()
        if len(idx) == 0:
            continue
        y = _FNS[name](x[idx], p.u[idx].to(x.device, x.dtype))
        out = out.index_copy(0, idx.to(x.device), y) if len(idx) < len(x) else y
    return out


def _color(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    x = x + (u[:, 0] - 0.5).view(-1, 1, 1, 1) * BRIGHTNESS
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (u[:, 1] * SATURATION).view(-1, 1, 1, 1) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (u[:, 2] + CONTRAST).view(-1, 1, 1, 1) + mean


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def _crop(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Integer translation by up to 1/8 of the side, zero fill (the reference 'crop')."""
    h, w = x.shape[-2:]
    sh, sw = int(h * CROP_PAD + 0.5), int(w * CROP_PAD + 0.5)
    ty = (u[:, 0] * (2 * sh + 1)).floor().clamp(max=2 * sh) - sh
    tx = (u[:, 1] * (2 * sw + 1)).floor().clamp(max=2 * sw) - sw
    theta = torch.zeros(len(x), 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 2 * tx / max(w - 1, 1)  # out[i] = in[i + t], as in the reference
    theta[:, 1, 2] = 2 * ty / max(h - 1, 1)
    return _affine(x, theta)


def _cutout(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Zero a square of half the side at a random position (may be clipped at the border)."""
    h, w = x.shape[-2:]
    ch, cw = int(h * CUTOUT + 0.5), int(w * CUTOUT + 0.5)
    cy = (u[:, 0] * (h + (1 - ch % 2))).floor()
    cx = (u[:, 1] * (w + (1 - cw % 2))).floor()
    ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
    y0, x0 = (cy - ch // 2).view(-1, 1, 1), (cx - cw // 2).view(-1, 1, 1)
    inside = (ys >= y0) & (ys < y0 + ch) & (xs >= x0) & (xs < x0 + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def _flip(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return torch.where((u[:, 0] < 0.5).view(-1, 1, 1, 1), x.flip(3), x)


def _scale(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    theta = torch.zeros(len(x), 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = u[:, 0] * (SCALE - 1 / SCALE) + 1 / SCALE
    theta[:, 1, 1] = u[:, 1] * (SCALE - 1 / SCALE) + 1 / SCALE
    return _affine(x, theta)


def _rotate(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    a = (u[:, 0] - 0.5) * 2 * ROTATE_DEG / 180 * math.pi
    theta = torch.zeros(len(x), 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a), torch.sin(-a)
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a), torch.cos(a)
    return _affine(x, theta)


_FNS = {"color": _color, "crop": _crop, "cutout": _cutout, "flip": _flip, "scale": _scale, "rotate": _rotate}
