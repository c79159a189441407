"""Radial Fourier filters of image batches and feature maps: FFT-bin radius, band masks, low/high/band-pass
filtering and band decomposition.

Radii are in units of the Nyquist frequency: an axis' highest frequency is 1, the corners of the spectrum reach
sqrt(2). Filtering is done in float64; low + high = input exactly.
The frequency analysis (``kdlab.analysis.frequency``, ``kdlab.analysis.fourier_heatmap``) and the frequency-band
distillation method (``freq_kd``) share these.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from kdlab.errors import ConfigError, ShapeError

MAX_RADIUS = math.sqrt(2.0)


def radius_grid(h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(h, w) float64 radius of each FFT bin (``torch.fft.fft2`` layout) in units of Nyquist."""
    if h < 1 or w < 1:
        raise ShapeError(f"image size: expected positive height and width, got {(h, w)}")
    fy = torch.fft.fftfreq(h, dtype=torch.float64, device=device) / 0.5
    fx = torch.fft.fftfreq(w, dtype=torch.float64, device=device) / 0.5
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def check_cutoff(value: float, name: str) -> float:
    """``value`` as a float radius in [0, sqrt(2)]; anything else is a ConfigError naming ``name``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= MAX_RADIUS:
        raise ConfigError(f"{name}: a radius in [0, sqrt(2)] (fraction of Nyquist), got {value!r}")
    return float(value)


def band_mask(h: int, w: int, low: float = 0.0, high: float = MAX_RADIUS,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean (h, w) mask of FFT bins with radius in ``(low, high]`` (``low == 0`` includes the DC term).

    Masks of adjacent bands ``(a, b]`` and ``(b, c]`` do not overlap and together cover ``(a, c]``.
    """
    lo, hi = check_cutoff(low, "low"), check_cutoff(high, "high")
    if lo > hi:
        raise ConfigError(f"low ({lo}) must not exceed high ({hi})")
    r = radius_grid(h, w, device)
    keep = r <= hi + 1e-12
    return keep & (r > lo + 1e-12) if lo > 0 else keep


def low_pass_mask(h: int, w: int, cutoff: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Mask of bins with radius <= ``cutoff`` (DC always included)."""
    return band_mask(h, w, 0.0, check_cutoff(cutoff, "cutoff"), device)


def check_images(x: torch.Tensor) -> torch.Tensor:
    """``x`` if it is a tensor (..., H, W); else a ShapeError."""
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ShapeError(f"x: expected a tensor (..., H, W), got {getattr(x, 'shape', type(x).__name__)}")
    return x


def apply_mask(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` (..., H, W) with only the frequencies in ``mask`` kept; computed in float64, returned as float64.

    The masks here are symmetric under f -> -f, so the result is real (the imaginary part is round-off).
    """
    x = check_images(x)
    if tuple(mask.shape) != tuple(x.shape[-2:]):
        raise ShapeError(f"mask {tuple(mask.shape)} does not match images {tuple(x.shape[-2:])}")
    spec = torch.fft.fft2(x.to(torch.float64))
    return torch.fft.ifft2(spec * mask.to(spec.device)).real


def low_pass(x: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Frequencies with radius <= ``cutoff`` (float64)."""
    return apply_mask(x, low_pass_mask(*x.shape[-2:], cutoff, x.device))


def high_pass(x: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Frequencies with radius > ``cutoff`` (float64); ``low_pass(x, c) + high_pass(x, c) == x``."""
    return apply_mask(x, ~low_pass_mask(*x.shape[-2:], cutoff, x.device))


def band_pass(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Frequencies with radius in ``(low, high]`` (float64)."""
    return apply_mask(x, band_mask(*x.shape[-2:], low, high, x.device))


def decompose(x: torch.Tensor, edges: Sequence[float]) -> list[torch.Tensor]:
    """``x`` split into the bands between consecutive radii ``0 < e1 < ... < sqrt(2)``: the bands sum to ``x``.

    ``edges`` are the inner boundaries; ``decompose(x, [c])`` is ``[low_pass(x, c), high_pass(x, c)]``.
    """
    inner = [check_cutoff(e, "edges") for e in edges]
    if any(b <= a for a, b in zip(inner, inner[1:], strict=False)):
        raise ConfigError(f"edges: must increase strictly, got {list(edges)}")
    bounds = [0.0, *inner, MAX_RADIUS]
    return [band_pass(x, a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
