"""Semi-supervised methods' shared parts: an unlabelled image pool drawn alongside each labelled batch,
and the weak/strong image augmentations FixMatch uses (vectorised torch ops, values kept in [0, 1]).

The trainer iterates the labelled set; each step a method draws ``unlabelled_ratio`` times as many
unlabelled images from the pool (the global torch RNG, seeded by the trainer, picks them). The pool is a
registered dataset's train split (``unlabelled`` + ``unlabelled_params``) or any images given to
``use_unlabelled``.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from kdlab.data.api import load
from kdlab.data.base import ArrayDataset
from kdlab.distill.base import Distiller
from kdlab.errors import ConfigError
from kdlab.registry import Param

UNLABELLED_PARAMS: dict[str, Param] = {
    "unlabelled": Param(None, "registered dataset whose train split is the unlabelled pool (labels unused)", str),
    "unlabelled_params": Param(None, "parameters of the unlabelled dataset (e.g. {size: 28})", dict),
    "unlabelled_ratio": Param(4, "unlabelled images drawn per labelled image each step", int, 0, 64),
}


class SemiSupervised(Distiller):
    """A distiller that also learns from unlabelled images of the target domain."""

    params: ClassVar[dict[str, Param]] = dict(UNLABELLED_PARAMS)

    def __init__(self, *args: Any, **params: Any):
        super().__init__(*args, **params)
        self._pool: torch.Tensor | None = None
        self._pool_cache: torch.Tensor | None = None  # per-pool-image teacher targets, filled on first use
        if params.get("unlabelled"):
            data = load(params["unlabelled"], split="train", **(params.get("unlabelled_params") or {}))
            self.use_unlabelled(data)

    def use_unlabelled(self, data: ArrayDataset | torch.Tensor) -> Distiller:
        """Set the unlabelled pool: an ``ArrayDataset`` (labels ignored) or an (N, C, H, W) tensor."""
        x = data.x if isinstance(data, ArrayDataset) else torch.as_tensor(data, dtype=torch.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.in_shape:
            raise ConfigError(f"unlabelled: images of shape {tuple(x.shape[1:])} do not match the input shape "
                              f"{self.in_shape}")
        self._pool, self._pool_cache = x, None
        return self

    @property
    def pool_size(self) -> int:
        return 0 if self._pool is None else len(self._pool)

    def unlabelled_batch(self, n_labelled: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(images, pool indices)`` of this step's unlabelled draw, or None without a pool."""
        n = n_labelled * self.hp["unlabelled_ratio"]
        if self._pool is None or n == 0:
            return None
        idx = torch.randint(len(self._pool), (n,))
        return self._pool[idx].to(device, non_blocking=True), idx


# ----------------------------------------------------------------------------------------- augmentations

def _affine(x: torch.Tensor, angle: torch.Tensor, shear: torch.Tensor, scale: torch.Tensor,
            shift: torch.Tensor) -> torch.Tensor:
    """Per-image affine warp (radians, shear factor, zoom, shift in units of half the image side)."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(len(x), 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 1] = cos / scale, (-sin + shear) / scale
    theta[:, 1, 0], theta[:, 1, 1] = sin / scale, cos / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def weak_augment(x: torch.Tensor, max_shift: float = 0.125) -> torch.Tensor:
    """Random translation by up to ``max_shift`` of the image side (no flips: digits are not symmetric)."""
    n = len(x)
    shift = (torch.rand(n, 2, device=x.device) * 2 - 1) * 2 * max_shift
    one = torch.ones(n, device=x.device)
    return _affine(x, 0 * one, 0 * one, one, shift).clamp_(0.0, 1.0)


def strong_augment(x: torch.Tensor, cutout: float = 0.4) -> torch.Tensor:
    """RandAugment-style distortion: rotation +-30 deg, shear +-0.3, zoom 0.8-1.2, shift +-15%, random
    brightness and contrast, then a cutout square of ``cutout`` x the side (FixMatch's strong branch)."""
    n, _, h, w = x.shape
    u = lambda *s: torch.rand(*s, device=x.device) * 2 - 1  # noqa: E731  uniform in [-1, 1]
    out = _affine(x, u(n) * math.radians(30), u(n) * 0.3, 1 + 0.2 * u(n), u(n, 2) * 0.3)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * (1 + 0.5 * u(n, 1, 1, 1)) + mean + 0.2 * u(n, 1, 1, 1)
    side = max(1, int(round(cutout * min(h, w))))
    cy = torch.randint(0, h, (n, 1, 1), device=x.device)
    cx = torch.randint(0, w, (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    hole = ((rows - cy).abs() <= side // 2) & ((cols - cx).abs() <= side // 2)
    return out.masked_fill(hole[:, None], 0.5).clamp_(0.0, 1.0)
