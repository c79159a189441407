"""Fourier heat maps (Yin, Gontijo Lopes, Shlens, Cubuk & Gilmer, "A Fourier Perspective on Model
Robustness in Computer Vision", NeurIPS 2019): the error rate and the output change of a model when every
test image is perturbed by one Fourier basis image of a fixed L2 norm, for every basis image.

Basis image U_ij is the real image of unit L2 norm whose 2-D DFT is non-zero only at (i, j) and (-i, -j):
a normalised cosine. U_ij and U_-i,-j are the same image, so each one is evaluated once and its value fills
both positions; the unique ones are orthonormal. Per image and channel the perturbation is
``x + r * eps * U_ij`` with a random sign r (as in the paper), optionally clipped to the valid range.
Maps are returned centred (``fftshift``: DC in the middle, the highest frequencies at the edges).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from kdlab.errors import ConfigError, ShapeError
from kdlab.fourier import MAX_RADIUS, radius_grid

Progress = Callable[[int, int, str], None]


def unique_frequencies(h: int, w: int) -> list[tuple[int, int]]:
    """One (i, j) of each pair {(i, j), (-i, -j)} (FFT indices), in row-major order."""
    out = []
    for i in range(h):
        for j in range(w):
            pi, pj = (-i) % h, (-j) % w
            if i * w + j <= pi * w + pj:
                out.append((i, j))
    return out


def basis_image(h: int, w: int, i: int, j: int) -> torch.Tensor:
    """U_ij (h, w) float64: unit L2 norm, DFT supported on (i, j) and (-i, -j) only."""
    if not (0 <= i < h and 0 <= j < w):
        raise ConfigError(f"frequency ({i}, {j}) is outside the {h}x{w} FFT grid")
    m = torch.arange(h, dtype=torch.float64)[:, None]
    n = torch.arange(w, dtype=torch.float64)[None, :]
    u = torch.cos(2 * math.pi * (i * m / h + j * n / w))
    return u / torch.linalg.vector_norm(u)


def basis_images(h: int, w: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """All unique basis images (K, h, w) float64 and their FFT indices."""
    freqs = unique_frequencies(h, w)
    return torch.stack([basis_image(h, w, i, j) for i, j in freqs]), freqs


@dataclass
class FourierHeatmap:
    """Centred (H, W) maps: ``error`` (error rate under each perturbation) and ``change`` (mean L2 change of
    the logits). Row/column k of a map is frequency ``k - H//2`` (``k - W//2``) cycles per image."""

    error: np.ndarray
    change: np.ndarray
    eps: float
    n_images: int
    clean_error: float

    @property
    def change_normalized(self) -> np.ndarray:
        """``change`` divided by its maximum (the shape of the sensitivity, independent of scale)."""
        top = float(self.change.max())
        return self.change / top if top > 0 else self.change.copy()

    @property
    def frequencies(self) -> tuple[np.ndarray, np.ndarray]:
        """Vertical and horizontal frequencies (cycles per image) of the rows and columns."""
        h, w = self.error.shape
        return np.arange(h) - h // 2, np.arange(w) - w // 2

    def band_profile(self, n_bins: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Mean error per radial bin (radius in units of Nyquist, as in ``kdlab.fourier``)."""
        h, w = self.error.shape
        r = np.fft.fftshift(radius_grid(h, w).numpy())
        idx = np.clip(np.ceil(r / MAX_RADIUS * n_bins).astype(int) - 1, 0, n_bins - 1)
        sums, counts = np.bincount(idx.ravel(), self.error.ravel(), n_bins), np.bincount(idx.ravel(), None, n_bins)
        centres = (np.arange(n_bins) + 0.5) * MAX_RADIUS / n_bins
        return centres, np.divide(sums, counts, out=np.full(n_bins, np.nan), where=counts > 0)


@torch.no_grad()
def fourier_heatmap(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 4.0,
                    clip: tuple[float, float] | None = (0.0, 1.0), batch_size: int = 256, seed: int = 0,
                    progress: Progress | None = None) -> FourierHeatmap:
    """Fourier heat map of ``model`` on images ``x`` (N, C, H, W) with labels ``y``.

    ``eps`` is the L2 norm of the perturbation of each channel; ``clip`` the valid pixel range (None: no
    clipping, which keeps the map of a linear model exact). Every unique basis image is applied to every
    image once, in batches of about ``batch_size`` perturbed images.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ShapeError(f"x: expected images (N, C, H, W), got {getattr(x, 'shape', type(x).__name__)}")
    y = torch.as_tensor(y)
    if len(y) != len(x) or len(x) == 0:
        raise ShapeError(f"x and y: expected the same non-zero number of samples, got {len(x)} and {len(y)}")
    if not eps > 0:
        raise ConfigError(f"eps: the perturbation norm must be > 0, got {eps}")
    if batch_size < 1:
        raise ConfigError(f"batch_size: must be >= 1, got {batch_size}")
    n, c, h, w = x.shape
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    basis, freqs = basis_images(h, w)
    basis = basis.to(device, dtype)
    g = torch.Generator().manual_seed(seed)
    signs = (torch.randint(0, 2, (len(freqs), n, c), generator=g) * 2 - 1).to(device, dtype)
    was = model.training
    model.eval()
    err_sum = torch.zeros(len(freqs), dtype=torch.float64)
    chg_sum = torch.zeros(len(freqs), dtype=torch.float64)
    img_block = min(n, batch_size)
    per = max(1, batch_size // img_block)
    x, y = x.to(device, dtype), y.to(device)
    clean_wrong = 0.0
    try:
        for s in range(0, n, img_block):
            xb, yb = x[s:s + img_block], y[s:s + img_block]
            zb = model(xb)
            clean_wrong += float((zb.argmax(1) != yb).sum())
            for k in range(0, len(freqs), per):
                ub, sb = basis[k:k + per], signs[k:k + per, s:s + img_block]
                pert = xb[None] + eps * sb[..., None, None] * ub[:, None, None]
                if clip is not None:
                    pert = pert.clamp(*clip)
                z = model(pert.reshape(-1, c, h, w)).reshape(len(ub), len(xb), -1)
                chg_sum[k:k + len(ub)] += torch.linalg.vector_norm((z - zb[None]).double(), dim=-1).sum(1).cpu()
                err_sum[k:k + len(ub)] += (z.argmax(-1) != yb[None]).double().sum(1).cpu()
                if progress is not None:
                    done = (s // img_block) * len(freqs) + min(k + per, len(freqs))
                    progress(done, math.ceil(n / img_block) * len(freqs), f"basis {min(k + per, len(freqs))}/"
                                                                          f"{len(freqs)}")
    finally:
        model.train(was)
    error, change = np.zeros((h, w)), np.zeros((h, w))
    for k, (i, j) in enumerate(freqs):
        for a, b in ((i, j), ((-i) % h, (-j) % w)):
            error[a, b], change[a, b] = err_sum[k] / n, chg_sum[k] / n
    return FourierHeatmap(np.fft.fftshift(error), np.fft.fftshift(change), float(eps), int(n), clean_wrong / n)
