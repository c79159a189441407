"""Graph frequencies of node predictions: the normalised-Laplacian spectrum, Dirichlet energy and the split of
a node signal (logits or class probabilities) into low- and high-frequency energy.

L = I - D^-1/2 A D^-1/2 has eigenvalues in [0, 2]; D^1/2 1 has eigenvalue 0 (a signal constant up to degree
scaling is the lowest frequency), eigenvalues near 2 belong to signals that flip sign across edges.
Low-frequency knowledge is what neighbours share, high-frequency knowledge how they differ (Wu et al.,
"Extracting Low-/High-Frequency Knowledge from Graph Neural Networks and Injecting it into MLPs: An
Effective GNN-to-MLP Distillation Framework", AAAI 2023). Dense float64 eigendecomposition: meant for
graphs up to a few thousand nodes.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from kdlab.data.graphs import GraphData
from kdlab.errors import ConfigError, ShapeError

SIGNALS = ("probs", "logits")
MAX_DENSE_NODES = 8000


def adjacency(graph: GraphData) -> np.ndarray:
    """Dense symmetric 0/1 adjacency (float64) of ``graph`` (no self-loops)."""
    n = graph.num_nodes
    if n > MAX_DENSE_NODES:
        raise ConfigError(f"graph: {n} nodes exceed the dense spectral analysis limit of {MAX_DENSE_NODES}")
    a = np.zeros((n, n))
    s, d = graph.edge_index.cpu().numpy()
    a[s, d] = 1.0
    return a


def normalized_laplacian(graph: GraphData) -> np.ndarray:
    """L = I - D^-1/2 A D^-1/2 (float64), with Chung's convention L_ii = 0 for an isolated node (so that
    tr(Z^T L Z) is exactly the sum over edges and D^1/2 1 stays in the null space)."""
    a = adjacency(graph)
    deg = a.sum(1)
    inv = np.divide(1.0, np.sqrt(deg), out=np.zeros_like(deg), where=deg > 0)
    return np.diag((deg > 0).astype(np.float64)) - inv[:, None] * a * inv[None, :]


@dataclass
class GraphSpectrum:
    """Eigenvalues (ascending, in [0, 2]) and orthonormal eigenvectors (columns) of the normalised Laplacian."""

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    laplacian: np.ndarray

    def coefficients(self, signal: Any) -> np.ndarray:
        """Graph Fourier coefficients U^T Z (nodes, channels) of a node signal Z."""
        return self.eigenvectors.T @ _signal(signal, len(self.eigenvalues))

    def filter(self, signal: Any, low: float = 0.0, high: float = 2.0) -> np.ndarray:
        """The part of ``signal`` on eigenvalues in [low, high] (an ideal band filter)."""
        z = _signal(signal, len(self.eigenvalues))
        keep = (self.eigenvalues >= low - 1e-12) & (self.eigenvalues <= high + 1e-12)
        u = self.eigenvectors[:, keep]
        return u @ (u.T @ z)


def spectrum(graph: GraphData) -> GraphSpectrum:
    """Eigendecomposition of ``graph``'s normalised Laplacian (numpy ``eigh``, float64)."""
    lap = normalized_laplacian(graph)
    vals, vecs = np.linalg.eigh(lap)
    return GraphSpectrum(np.clip(vals, 0.0, 2.0), vecs, lap)


def _signal(z: Any, n: int) -> np.ndarray:
    a = (z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)).astype(np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or len(a) != n:
        raise ShapeError(f"signal: expected (nodes={n}, channels), got {a.shape}")
    return a


def node_signal(logits: Any, kind: str = "probs") -> np.ndarray:
    """What is decomposed: softmax probabilities (default; invariant to per-node logit shifts) or raw logits."""
    if kind not in SIGNALS:
        raise ConfigError(f"kind: {kind!r} is not one of {list(SIGNALS)}")
    z = _signal(logits, len(logits))
    if kind == "logits":
        return z
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def dirichlet_energy(laplacian: np.ndarray, signal: Any) -> float:
    """tr(Z^T L Z) = 1/2 sum_ij A_ij ||z_i / sqrt(d_i) - z_j / sqrt(d_j)||^2 (how much Z varies over edges)."""
    z = _signal(signal, len(laplacian))
    return float(np.sum(z * (laplacian @ z)))


@dataclass
class SpectralEnergy:
    """Energy of a node signal per eigenvalue, and split at ``cutoff`` into low (<=) and high (>) parts."""

    eigenvalues: np.ndarray
    energy: np.ndarray  # (nodes,) squared coefficient norm at each eigenvalue
    cutoff: float

    @property
    def low(self) -> float:
        return float(self.energy[self.eigenvalues <= self.cutoff].sum())

    @property
    def high(self) -> float:
        return float(self.energy[self.eigenvalues > self.cutoff].sum())

    @property
    def high_fraction(self) -> float:
        total = self.low + self.high
        return self.high / total if total > 0 else 0.0

    def binned(self, n_bins: int = 10) -> pd.DataFrame:
        """Energy in ``n_bins`` equal eigenvalue bins over [0, 2]: bin centre, energy, fraction."""
        idx = np.clip(np.ceil(self.eigenvalues / 2.0 * n_bins).astype(int) - 1, 0, n_bins - 1)
        e = np.bincount(idx, self.energy, n_bins)
        total = e.sum()
        return pd.DataFrame({"eigenvalue": (np.arange(n_bins) + 0.5) * 2.0 / n_bins, "energy": e,
                             "fraction": e / total if total > 0 else np.zeros(n_bins)})


def spectral_energy(spec: GraphSpectrum, signal: Any, cutoff: float = 1.0) -> SpectralEnergy:
    """Energy of ``signal`` at each Laplacian eigenvalue; ``cutoff`` in [0, 2] splits low from high."""
    if not 0.0 <= cutoff <= 2.0:
        raise ConfigError(f"cutoff: an eigenvalue in [0, 2], got {cutoff}")
    c = spec.coefficients(signal)
    return SpectralEnergy(spec.eigenvalues, (c**2).sum(1), float(cutoff))


def high_frequency_similarity(spec: GraphSpectrum, reference: Any, other: Any, cutoff: float = 1.0) -> float:
    """Cosine similarity of the high-frequency parts (eigenvalues > ``cutoff``) of two node signals: how much
    of the reference's (the teacher's) high-frequency pattern the other signal reproduces."""
    a = spec.filter(reference, cutoff + 1e-9, 2.0).ravel()
    b = spec.filter(other, cutoff + 1e-9, 2.0).ravel()
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else 0.0


def compare_models(graph: GraphData | GraphSpectrum, outputs: Mapping[str, Any], reference: str | None = None,
                   cutoff: float = 1.0, kind: str = "probs") -> pd.DataFrame:
    """One row per model output (N, C) on ``graph``: low/high energy, high fraction, Dirichlet energy and
    (with ``reference``) the cosine similarity of its high-frequency part to the reference's."""
    if not outputs:
        raise ConfigError("outputs: give at least one model's node outputs, e.g. {'teacher': logits}")
    if reference is not None and reference not in outputs:
        raise ConfigError(f"reference: {reference!r} is not one of {list(outputs)}")
    spec = graph if isinstance(graph, GraphSpectrum) else spectrum(graph)
    signals = {k: node_signal(v, kind) for k, v in outputs.items()}
    rows = []
    for name, z in signals.items():
        se = spectral_energy(spec, z, cutoff)
        rows.append({"model": name, "low": se.low, "high": se.high, "high_fraction": se.high_fraction,
                     "dirichlet": dirichlet_energy(spec.laplacian, z),
                     "hf_similarity": high_frequency_similarity(spec, signals[reference], z, cutoff)
                     if reference is not None else float("nan")})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------- GNN-to-MLP study
# (the study that trains the models is ``kdlab.distill.graph_study.distillation_study``)


def summarize_study(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of each model's numbers (columns ``<name>`` and ``<name>_std``), model order kept."""
    order = list(dict.fromkeys(rows["model"]))
    num = rows.drop(columns=["seed"]).groupby("model", sort=False)
    mean, std = num.mean(), num.std(ddof=0).add_suffix("_std")
    out = pd.concat([mean, std], axis=1).loc[order].reset_index()
    out.insert(1, "seeds", rows.groupby("model", sort=False).size().loc[order].values)
    return out
