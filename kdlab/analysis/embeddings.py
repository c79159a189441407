"""2-D embeddings of tapped features (PCA, UMAP), teacher and student side by side, cached per run.

``layer_features`` taps one layer over a dataset; ``embed`` maps (N, D) features to (N, 2); ``embed_pair``
does both models on the same samples; with ``cache_dir`` (e.g. ``run.folder / "artifacts" / "embeddings"``)
results are stored as ``.npz`` keyed by everything that determines them and read back next time.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdlab.analysis.cka import pool_features
from kdlab.data.base import ArrayDataset, BatchLoader
from kdlab.errors import ConfigError
from kdlab.models.taps import FeatureTaps

METHODS = ("pca", "umap")


@torch.no_grad()
def layer_features(model: nn.Module, data: ArrayDataset, layer: str, pool: str = "mean",
                   batch_size: int = 256, max_samples: int | None = None) -> np.ndarray:
    """Outputs of ``layer`` for the first ``max_samples`` samples of ``data`` as (N, D) float64."""
    subset = data if max_samples is None else data.subset(np.arange(min(max_samples, len(data))))
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    out = []
    try:
        with FeatureTaps(model, [layer], clone=True, detach=True) as taps:
            for x, _y, _i in BatchLoader(subset, batch_size):
                model(x.to(device))
                out.append(pool_features(taps.pop()[layer], pool).double().cpu())
    finally:
        model.train(was)
    return torch.cat(out).numpy()


def embed(features: Any, method: str = "pca", seed: int = 0, n_neighbors: int = 15,
          min_dist: float = 0.1) -> np.ndarray:
    """(N, D) features -> (N, 2): ``pca`` (sklearn, standardised sign) or ``umap`` (umap-learn)."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    if method not in METHODS:
        raise ConfigError(f"method: {method!r} is not one of {list(METHODS)}")
    if len(x) < 3:
        raise ConfigError(f"features: need at least 3 samples to embed, got {len(x)}")
    if method == "pca":
        from sklearn.decomposition import PCA  # lazy: importing sklearn costs about a second

        z = PCA(n_components=min(2, x.shape[1]), random_state=seed).fit_transform(x)
        if z.shape[1] < 2:
            z = np.column_stack([z, np.zeros(len(z))])
        peak = z[np.abs(z).argmax(0), [0, 1]]
        return z * np.where(peak < 0, -1.0, 1.0)  # sign fixed: each axis's largest |coordinate| is positive
    import umap

    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(x) - 1), min_dist=min_dist,
                        random_state=seed, n_jobs=1)
    return np.asarray(reducer.fit_transform(x), dtype=np.float64)


@dataclass
class EmbeddingPair:
    """Teacher and student embeddings of the same samples, with their labels."""

    teacher: np.ndarray
    student: np.ndarray
    labels: np.ndarray
    method: str
    teacher_layer: str
    student_layer: str


def _key(**parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def embed_pair(teacher: nn.Module, student: nn.Module, data: ArrayDataset, teacher_layer: str,
               student_layer: str, method: str = "pca", pool: str = "mean", max_samples: int = 1000,
               seed: int = 0, cache_dir: str | Path | None = None,
               features: tuple[Any, Any] | None = None) -> EmbeddingPair:
    """Embed ``teacher_layer`` and ``student_layer`` features of the first ``max_samples`` samples; read from /
    write to ``cache_dir`` when given (keyed by data, layers, method, pool, samples, seed and the weights).
    ``features``: the two layers' pooled features of those samples when another pass has them already."""
    if method not in METHODS:
        raise ConfigError(f"method: {method!r} is not one of {list(METHODS)}")
    n = min(max_samples, len(data))
    labels = data.y[:n].numpy()
    path = None
    if cache_dir is not None:
        weights = [float(sum(p.detach().double().sum() for p in m.parameters())) for m in (teacher, student)]
        key = _key(data=data.name, n=n, labels=int(labels.sum()), t=teacher_layer, s=student_layer, method=method,
                   pool=pool, seed=seed, weights=weights)
        path = Path(cache_dir) / f"{method}-{key}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                return EmbeddingPair(z["teacher"], z["student"], z["labels"], method, teacher_layer, student_layer)
    ft, fs = features if features is not None else (layer_features(teacher, data, teacher_layer, pool, max_samples=n),
                                                    layer_features(student, data, student_layer, pool, max_samples=n))
    t, s = embed(ft, method, seed), embed(fs, method, seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, teacher=t, student=s, labels=labels)
    return EmbeddingPair(t, s, labels, method, teacher_layer, student_layer)
