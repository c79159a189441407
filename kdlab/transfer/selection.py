"""Source selection: score every source of a zoo on a labelled target with every metric, and turn scores
into relevance weights.

``rank_sources`` extracts each source's features and class probabilities on the target once
(``source_features``) and reuses them for all metrics (and later for fitting the teachers' heads).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kdlab.data.base import ArrayDataset
from kdlab.errors import ConfigError
from kdlab.transfer.metrics import FEATURE_FNS, METRICS, PREDICTION_FNS, check_metrics
from kdlab.transfer.teachers import extract
from kdlab.transfer.zoo import SourceZoo

Progress = Callable[[int, int, str], None]


@dataclass
class SourceFeatures:
    """One source on the target's labelled images: features (N, D) and source-class probabilities (N, K)."""

    features: np.ndarray
    probs: np.ndarray
    seconds: float = 0.0


def source_features(zoo: SourceZoo, target: ArrayDataset, sources: Sequence[str] | None = None,
                    progress: Progress | None = None) -> dict[str, SourceFeatures]:
    """Features and probabilities of every source on ``target`` (one forward pass per source)."""
    names = zoo.check(sources)
    out: dict[str, SourceFeatures] = {}
    for i, name in enumerate(names):
        if progress:
            progress(i, 2 * len(names), f"features of {name}")
        model = zoo.load(name)
        if tuple(zoo.card(name).in_shape) != tuple(target.in_shape):
            raise ConfigError(f"target: images of shape {target.in_shape} do not fit source {name!r} "
                              f"(expects {tuple(zoo.card(name).in_shape)})")
        t0 = time.perf_counter()
        f, p = extract(model, target)
        out[name] = SourceFeatures(f, p, time.perf_counter() - t0)
    return out


def score_features(feats: Mapping[str, SourceFeatures], labels: object, metrics: Sequence[str] = METRICS,
                   progress: Progress | None = None) -> pd.DataFrame:
    """Every metric of every source from precomputed features (rows: sources, columns: metrics)."""
    metrics = check_metrics(metrics)
    y = np.asarray(labels)
    rows, n = {}, len(feats)
    for i, (name, sf) in enumerate(feats.items()):
        if progress:
            progress(n + i, 2 * n, f"metrics of {name}")
        row = {}
        for m in metrics:
            fn = FEATURE_FNS.get(m)
            row[m] = fn(sf.features, y) if fn else PREDICTION_FNS[m](sf.probs, y)
        rows[name] = row
    df = pd.DataFrame.from_dict(rows, orient="index")[metrics]
    df.index.name = "source"
    return df


def rank_sources(zoo: SourceZoo, target: ArrayDataset, metrics: Sequence[str] = METRICS,
                 sources: Sequence[str] | None = None, progress: Progress | None = None,
                 features: Mapping[str, SourceFeatures] | None = None) -> pd.DataFrame:
    """DataFrame of every metric per source on the labelled ``target`` (higher = more transferable).

    ``df.attrs`` holds the timings (``seconds``, ``feature_seconds``). Pass ``features`` from an earlier
    ``source_features`` call to skip the forward passes.
    """
    if not isinstance(target, ArrayDataset) or len(target) < 4:
        raise ConfigError("target: expected a labelled ArrayDataset with at least 4 samples")
    t0 = time.perf_counter()
    feats = dict(features) if features is not None else source_features(zoo, target, sources, progress)
    t1 = time.perf_counter()
    df = score_features(feats, target.y.numpy(), metrics, progress)
    if progress:
        progress(1, 1, "ranked")
    df.attrs.update(seconds=time.perf_counter() - t0, feature_seconds=t1 - t0)
    return df


def source_weights(scores: pd.Series | pd.DataFrame, temperature: float = 1.0,
                   metric: str | None = None) -> pd.Series:
    """Relevance weights softmax(zscore(s) / temperature) over sources (sum to 1); a source whose score is not
    finite (the metric failed on it) gets weight 0 and the others share the weight.

    Scores are standardised across sources first, so ``temperature`` means the same for every metric:
    small values approach DistillNearest (all weight on the best source), large ones uniform weights.
    A DataFrame from ``rank_sources`` needs ``metric``.
    """
    if isinstance(scores, pd.DataFrame):
        if metric not in scores.columns:
            raise ConfigError(f"metric: {metric!r} is not a column of the scores; valid: {list(scores.columns)}")
        scores = scores[metric]
    s = pd.to_numeric(scores, errors="coerce").astype(float)
    finite = np.isfinite(s.to_numpy())
    if not finite.any():
        raise ConfigError("scores: need a finite score for at least one source")
    if not temperature > 0:
        raise ConfigError(f"temperature: must be > 0, got {temperature!r}")
    ok = s[finite]  # a metric that failed on a source (NaN, or LogME's -inf on separable few-shot data): weight 0
    sd = float(ok.std(ddof=0))
    z = (ok - ok.mean()) / sd if sd > 0 else ok * 0.0
    e = np.exp((z - z.max()) / temperature)
    return (e / e.sum()).reindex(s.index, fill_value=0.0).rename("weight")


def best_source(scores: pd.DataFrame | pd.Series, metric: str | None = None) -> str:
    """The source with the highest score (DistillNearest's choice)."""
    if isinstance(scores, pd.DataFrame) and metric not in scores.columns:
        raise ConfigError(f"metric: {metric!r} is not a column of the scores; valid: {list(scores.columns)}")
    s = scores[metric] if isinstance(scores, pd.DataFrame) else scores
    return str(s.astype(float).idxmax())
