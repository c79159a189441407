"""Which spatial frequencies a model relies on: accuracy/agreement on low- and high-pass filtered inputs and
feature-map spectral energy (the radial FFT filters themselves are in ``kdlab.fourier``).

The band view follows Yin et al., "A Fourier Perspective on Model Robustness in Computer Vision"
(NeurIPS 2019) and Wang et al., "High-Frequency Component Helps Explain the Generalization of CNNs"
(CVPR 2020): filter the test images to keep only low (or only high) frequencies and see which model
still classifies them. Radii are in units of the Nyquist frequency (``kdlab.fourier``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from kdlab.analysis.fourier_heatmap import fourier_heatmap
from kdlab.errors import ConfigError, ShapeError
from kdlab.fourier import MAX_RADIUS, check_cutoff, check_images, high_pass, low_pass, low_pass_mask, radius_grid
from kdlab.models.taps import FeatureTaps, chosen_layers

FILTERS = ("low", "high")
Progress = Callable[[int, int, str], None]


# ------------------------------------------------------------------------------------------ band curves

@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    was = model.training
    model.eval()
    try:
        out = [model(x[i:i + batch_size].to(device, dtype)).double().cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was)
    return torch.cat(out)


def _check_models(models: Mapping[str, nn.Module], reference: str | None) -> str | None:
    if not models:
        raise ConfigError("models: give at least one model, e.g. {'teacher': t, 'student': s}")
    if reference is not None and reference not in models:
        raise ConfigError(f"reference: {reference!r} is not one of {list(models)}")
    return reference


def band_curves(models: Mapping[str, nn.Module], x: torch.Tensor, y: torch.Tensor,
                cutoffs: Sequence[float] = tuple(np.linspace(0.1, 1.0, 10)), filters: Sequence[str] = FILTERS,
                reference: str | None = "teacher", batch_size: int = 500,
                progress: Progress | None = None) -> pd.DataFrame:
    """Accuracy of each model on low-pass and high-pass filtered ``x`` at each cutoff, and its top-1
    agreement with ``reference`` (the teacher; None: no agreement) on the same filtered images.

    Returns a tidy DataFrame: model, filter ("low"/"high"/"none"), cutoff, acc, agreement (NaN without a
    reference). The "none" rows (cutoff NaN) are the unfiltered accuracies.
    """
    x, y = check_images(x), torch.as_tensor(y)
    if x.ndim != 4 or len(x) != len(y):
        raise ShapeError(f"x must be (N, C, H, W) with one label per image; got {tuple(x.shape)}, {len(y)} labels")
    reference = _check_models(models, reference)
    bad = [f for f in filters if f not in FILTERS]
    if bad:
        raise ConfigError(f"filters: {bad[0]!r} is not one of {list(FILTERS)}")
    cutoffs = [check_cutoff(c, "cutoffs") for c in cutoffs]
    jobs = [("none", float("nan"))] + [(f, c) for f in filters for c in cutoffs]
    rows = []
    for k, (kind, c) in enumerate(jobs):
        xf = x if kind == "none" else (low_pass(x, c) if kind == "low" else high_pass(x, c))
        logits = {name: _logits(m, xf, batch_size) for name, m in models.items()}
        ref_pred = logits[reference].argmax(1) if reference else None
        for name, z in logits.items():
            pred = z.argmax(1)
            agree = float((pred == ref_pred).double().mean()) if ref_pred is not None else float("nan")
            rows.append({"model": name, "filter": kind, "cutoff": c, "acc": float((pred == y).double().mean()),
                         "agreement": agree})
        if progress is not None:
            progress(k + 1, len(jobs), f"{kind}-pass {c:.2f}" if kind != "none" else "unfiltered")
    return pd.DataFrame(rows, columns=["model", "filter", "cutoff", "acc", "agreement"])


# ------------------------------------------------------------------------------- feature spectral energy

def radial_spectrum(maps: torch.Tensor, n_bins: int = 8) -> np.ndarray:
    """Fraction of the power of (N, C, H, W) maps in ``n_bins`` equal radial bins over [0, sqrt(2)].

    The per-map mean is removed first (the DC term carries the map's mean, not its spatial pattern), so the
    fractions sum to 1 unless the maps are constant (then all are 0).
    """
    if maps.ndim != 4:
        raise ShapeError(f"maps: expected (N, C, H, W) feature maps, got {tuple(maps.shape)}")
    if n_bins < 1:
        raise ConfigError(f"n_bins: must be >= 1, got {n_bins}")
    m = maps.detach().to(torch.float64)
    m = m - m.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(m).abs().pow(2).mean(dim=(0, 1))
    r = radius_grid(*m.shape[-2:], m.device)
    idx = torch.clamp((r / MAX_RADIUS * n_bins).ceil().long() - 1, 0, n_bins - 1)
    energy = torch.zeros(n_bins, dtype=torch.float64, device=m.device).index_add_(0, idx.flatten(),
                                                                                   power.flatten())
    total = energy.sum()
    return (energy / total).cpu().numpy() if total > 0 else np.zeros(n_bins)


def high_frequency_fraction(maps: torch.Tensor, cutoff: float = 0.5) -> float:
    """Share of the (mean-removed) power of (N, C, H, W) maps at radius > ``cutoff``."""
    check_cutoff(cutoff, "cutoff")
    m = maps.detach().to(torch.float64)
    m = m - m.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(m).abs().pow(2).mean(dim=(0, 1))
    total = power.sum()
    high = power[~low_pass_mask(*m.shape[-2:], cutoff, m.device)].sum()
    return float(high / total) if total > 0 else 0.0


def feature_spectra(models: Mapping[str, nn.Module], x: torch.Tensor, layers: Mapping[str, Sequence[str]] | None = None,
                    n_bins: int = 8, batch_size: int = 256) -> pd.DataFrame:
    """Radial spectral energy of each model's spatial feature maps, layer by layer, on images ``x``.

    ``layers[name]`` are tap paths (default: the model's declared stages). Layers that are not maps
    (N, C, H, W) with H, W >= 2 are skipped. Returns model, layer, depth (0..1 through the network), bin,
    radius (bin centre, fraction of Nyquist) and energy (fraction of the layer's power).
    """
    _check_models(models, None)
    rows = []
    for name, model in models.items():
        paths = chosen_layers(model, (layers or {}).get(name))
        feats: dict[str, list[torch.Tensor]] = {p: [] for p in paths}
        was = model.training
        model.eval()
        dev = next(model.parameters()).device
        with torch.no_grad(), FeatureTaps(model, paths, detach=True) as taps:
            for i in range(0, len(x), batch_size):
                model(x[i:i + batch_size].to(dev))
                for p, v in taps.pop().items():
                    feats[p].append(v.cpu())
        model.train(was)
        for k, p in enumerate(paths):
            maps = torch.cat(feats[p])
            if maps.ndim != 4 or min(maps.shape[-2:]) < 2:
                continue
            energy = radial_spectrum(maps, n_bins)
            for b, e in enumerate(energy):
                rows.append({"model": name, "layer": p, "depth": (k + 1) / len(paths), "bin": b,
                             "radius": (b + 0.5) * MAX_RADIUS / n_bins, "energy": float(e)})
    return pd.DataFrame(rows, columns=["model", "layer", "depth", "bin", "radius", "energy"])


# ----------------------------------------------------------------------------------------- artifacts

@dataclass
class FrequencyArtifacts:
    """The results of a frequency analysis (``kdlab.jobs.frequency`` saves and reads them; graph: ``graph_kd``)."""

    bands: pd.DataFrame | None = None
    spectra: pd.DataFrame | None = None
    heatmaps: dict[str, Any] = field(default_factory=dict)  # name -> kdlab.analysis.fourier_heatmap.FourierHeatmap
    graph: pd.DataFrame | None = None  # kdlab.analysis.graph_frequency.summarize_study's table

    @property
    def empty(self) -> bool:
        return self.bands is None and self.spectra is None and self.graph is None and not self.heatmaps


def analyze(models: Mapping[str, nn.Module], x: torch.Tensor, y: torch.Tensor,
            cutoffs: Sequence[float] = tuple(np.linspace(0.1, 1.0, 10)), heatmap_images: int = 100, eps: float = 4.0,
            reference: str | None = "teacher", progress: Progress | None = None) -> FrequencyArtifacts:
    """The whole image study of ``models`` on ``x``: band curves, Fourier heat maps of the first
    ``heatmap_images`` images (0: none) and feature spectra. ``progress(done, total, message)`` is called
    along the way (the UIs run this in the background)."""
    n_steps = 1 + (len(models) if heatmap_images else 0) + 1
    step = 0

    def report(msg: str) -> None:
        if progress is not None:
            progress(step, n_steps, msg)

    report("band accuracy")
    bands = band_curves(models, x, y, cutoffs, reference=reference)
    step += 1
    maps = {}
    if heatmap_images:
        for name, model in models.items():
            report(f"Fourier heat map: {name}")
            maps[name] = fourier_heatmap(model, x[:heatmap_images], y[:heatmap_images], eps=eps)
            step += 1
    report("feature spectra")
    spectra = feature_spectra(models, x[: min(len(x), 256)])
    step += 1
    report("done")
    return FrequencyArtifacts(bands=bands, spectra=spectra, heatmaps=maps)
