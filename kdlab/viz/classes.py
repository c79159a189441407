"""Per-class views: teacher vs student accuracy per class (and the gap), confusion matrices."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdlab.viz.data import as_labels, as_predictions, check_same_length, class_names_for
from kdlab.viz.theme import GAP, LEGEND_RIGHT, SEQUENTIAL, STUDENT, TEACHER, apply_theme, plotly_text


def confusion_counts(preds: Any, labels: Any, num_classes: int | None = None) -> np.ndarray:
    """Counts (C, C) int64: row = true class, column = predicted class (sklearn's convention).

    ``preds`` are class indices (N,) or logits / probabilities (N, C) (argmax is taken).
    """
    p, y = as_predictions(preds), as_labels(labels)
    check_same_length(preds=p, labels=y)
    n = num_classes if num_classes is not None else max(int(p.max(initial=-1)), int(y.max(initial=-1))) + 1
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (y, p), 1)
    return m


def normalize_rows(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (float64); rows of a class with no samples stay 0."""
    c = np.asarray(counts, dtype=np.float64)
    s = c.sum(axis=1, keepdims=True)
    return np.divide(c, s, out=np.zeros_like(c), where=s > 0)


def per_class_accuracy(preds: Any, labels: Any, num_classes: int | None = None) -> np.ndarray:
    """Accuracy (recall) of each true class, float64 (C,); NaN for a class without samples."""
    m = confusion_counts(preds, labels, num_classes)
    support = m.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(m) / support, np.nan)


def confusion_matrix(preds: Any, labels: Any, class_names: Sequence[str] | None = None, normalize: bool = True,
                     title: str | None = None) -> go.Figure:
    """Heatmap of the confusion matrix (rows true, columns predicted); rows sum to 1 with ``normalize``.

    The heatmap's ``z`` is the matrix; ``customdata`` holds the raw counts either way.
    """
    p, y = as_predictions(preds), as_labels(labels)
    names = [plotly_text(c) for c in class_names_for(class_names, p, y)]
    counts = confusion_counts(p, y, len(names))
    z = normalize_rows(counts) if normalize else counts
    acc = float(np.trace(counts) / max(counts.sum(), 1))
    text_fmt = "%{z:.2f}" if normalize else "%{z:d}"
    fig = go.Figure(go.Heatmap(
        z=z, x=names, y=names, customdata=counts, colorscale=SEQUENTIAL, zmin=0,
        zmax=1 if normalize else max(int(counts.max(initial=0)), 1),
        texttemplate=text_fmt if len(names) <= 20 else None, name="confusion",
        colorbar=dict(title=dict(text="fraction of row" if normalize else "count")),
        hovertemplate="true %{y}<br>predicted %{x}<br>" + ("fraction %{z:.3f}<br>" if normalize else "")
                      + "count %{customdata}<extra></extra>"))
    fig.update_xaxes(title_text="predicted", type="category", side="bottom", showgrid=False)
    fig.update_yaxes(title_text="true", type="category", autorange="reversed", showgrid=False)
    side = min(900, 260 + 36 * len(names))
    return apply_theme(fig, title or f"Confusion matrix (accuracy {acc:.4f})", height=side)


def per_class_gap(teacher: Any, student: Any, labels: Any, class_names: Sequence[str] | None = None,
                  title: str = "Per-class accuracy: teacher vs student") -> go.Figure:
    """Per-class accuracy of teacher and student (grouped bars) and the gap teacher - student per class.

    ``teacher`` and ``student`` are logits / probabilities (N, C) or predicted classes (N,). Traces:
    ``teacher`` and ``student`` (row 1), ``gap`` (row 2); classes without samples are NaN.
    """
    pt, ps, y = as_predictions(teacher, "teacher"), as_predictions(student, "student"), as_labels(labels)
    check_same_length(teacher=pt, student=ps, labels=y)
    names = [plotly_text(c) for c in class_names_for(class_names, pt, ps, y)]
    acc_t = per_class_accuracy(pt, y, len(names))
    acc_s = per_class_accuracy(ps, y, len(names))
    gap = acc_t - acc_s
    support = np.bincount(y, minlength=len(names))
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.62, 0.38], vertical_spacing=0.08,
                        subplot_titles=("accuracy per class", "gap (teacher - student)"))
    for name, acc, color in (("teacher", acc_t, TEACHER), ("student", acc_s, STUDENT)):
        fig.add_trace(go.Bar(x=names, y=acc, name=name, marker_color=color, customdata=support,
                             hovertemplate="class %{x}: %{y:.4f} (n=%{customdata})"), row=1, col=1)
    fig.add_trace(go.Bar(x=names, y=gap, name="gap", marker_color=GAP, customdata=support,
                         hovertemplate="class %{x}: gap %{y:+.4f} (n=%{customdata})"), row=2, col=1)
    fig.update_xaxes(type="category")
    fig.update_xaxes(title_text="class", row=2, col=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title_text="teacher - student", zeroline=True, zerolinecolor="#888888", row=2, col=1)
    total_t, total_s = float((pt == y).mean()) if len(y) else np.nan, float((ps == y).mean()) if len(y) else np.nan
    return apply_theme(fig, f"{title} (teacher {total_t:.4f}, student {total_s:.4f})", height=560,
                       barmode="group", **LEGEND_RIGHT)
