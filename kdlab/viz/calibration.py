"""Calibration: expected calibration error and the reliability diagram (numpy, float64)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdlab.errors import ConfigError
from kdlab.viz.data import as_labels, as_probabilities, check_same_length
from kdlab.viz.theme import BASELINE, GAP, STUDENT, apply_theme, with_alpha


@dataclass
class ReliabilityBins:
    """Equal-width confidence bins over [0, 1]: bin ``b`` holds confidences in ``(edges[b], edges[b+1]]``
    (the first bin also holds 0). Empty bins have NaN accuracy and confidence and count 0."""

    edges: np.ndarray
    count: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray

    @property
    def ece(self) -> float:
        n = self.count.sum()
        if n == 0:
            return float("nan")
        filled = self.count > 0
        w = self.count[filled] / n
        return float(np.sum(w * np.abs(self.accuracy[filled] - self.confidence[filled])))


def reliability_bins(probs: Any, labels: Any, n_bins: int = 15, logits: bool | None = None) -> ReliabilityBins:
    """Per-bin count, accuracy and mean confidence of the top-1 prediction (see ``ReliabilityBins``).

    ``probs``: probabilities (N, C) or logits (``logits=None`` decides from the values, see
    ``as_probabilities``).
    """
    if int(n_bins) < 1:
        raise ConfigError(f"n_bins: {n_bins} must be >= 1")
    n_bins = int(n_bins)
    p = as_probabilities(probs, logits)
    y = as_labels(labels)
    check_same_length(probs=p, labels=y)
    conf = p.max(axis=1) if len(p) else np.zeros(0)
    correct = (p.argmax(axis=1) == y).astype(np.float64) if len(p) else np.zeros(0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
    acc[count == 0] = np.nan
    mean_conf[count == 0] = np.nan
    return ReliabilityBins(edges, count, acc, mean_conf)


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = 15, logits: bool | None = None) -> float:
    """ECE = sum over bins of (bin size / N) * |accuracy(bin) - mean confidence(bin)| (float64).

    Top-1 confidence, ``n_bins`` equal-width bins (Guo et al., 2017). ``probs``: probabilities (N, C), or
    logits (``logits=True``, or detected when rows are not probability vectors).
    """
    return reliability_bins(probs, labels, n_bins, logits).ece


def calibration(probs: Any, labels: Any, n_bins: int = 15, title: str = "Reliability diagram",
                logits: bool | None = None, name: str = "student", color: str = STUDENT) -> go.Figure:
    """Reliability diagram (accuracy per confidence bin against the diagonal, with the gap shaded) and a
    histogram of confidences below; the ECE is in the title.

    Traces: ``perfect calibration`` (diagonal), ``name`` (bars of per-bin accuracy, empty bins 0 height),
    ``gap`` (|confidence - accuracy| per bin, stacked on accuracy), ``samples`` (count per bin).
    """
    b = reliability_bins(probs, labels, n_bins, logits)
    centers = (b.edges[:-1] + b.edges[1:]) / 2
    width = float(b.edges[1] - b.edges[0])
    acc = np.nan_to_num(b.accuracy, nan=0.0)
    conf = np.nan_to_num(b.confidence, nan=0.0)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.06)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line=dict(color=BASELINE, dash="dash", width=1.5), hoverinfo="skip"), row=1, col=1)
    fig.add_trace(go.Bar(x=centers, y=acc, width=width, name=name, marker_color=color,
                         marker_line=dict(color="white", width=1), customdata=np.stack([conf, b.count], axis=1),
                         hovertemplate="confidence %{customdata[0]:.3f}<br>accuracy %{y:.3f}"
                                       "<br>n=%{customdata[1]}<extra></extra>"), row=1, col=1)
    # the gap between accuracy and confidence: from accuracy up (over-confident) or down (under-confident)
    fig.add_trace(go.Bar(x=centers, y=conf - acc, base=acc, width=width, name="gap", opacity=0.45,
                         marker=dict(color=with_alpha(GAP, 0.35), line=dict(color=GAP, width=1)),
                         hovertemplate="gap %{y:+.3f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=centers, y=b.count, width=width, name="samples", marker_color=BASELINE,
                         showlegend=False, hovertemplate="n=%{y}<extra></extra>"), row=2, col=1)
    fig.update_xaxes(range=[0, 1], row=1, col=1)
    fig.update_xaxes(range=[0, 1], title_text="confidence (top-1 probability)", row=2, col=1)
    fig.update_yaxes(range=[0, 1], title_text="accuracy", row=1, col=1)
    fig.update_yaxes(title_text="samples", row=2, col=1)
    return apply_theme(fig, f"{title}: ECE {b.ece:.4f} ({n_bins} bins)", height=560, barmode="overlay",
                       bargap=0)
