"""Figures of knowledge transfer between any two models: the teacher-by-student matrix of accuracy gains (which model
can teach which, and how much) and of complementary knowledge (what the teacher knows that the student does not).
Pure: data in, ``go.Figure`` out."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from kdlab.errors import ConfigError
from kdlab.viz.theme import DIVERGING, SEQUENTIAL, apply_theme, plotly_text

KINDS = {
    "gain": ("Accuracy gain of each student from each teacher (points)", "gain (points)", "gain"),
    "complementary": ("Complementary knowledge: teacher right, student wrong (%)",
                      "teacher right,<br>student wrong (%)", "complementary"),
}


def _matrix(names: Sequence[str], values: Sequence[Sequence[float | None]] | np.ndarray) -> np.ndarray:
    """``values`` as a float (k, k) matrix with a NaN diagonal; refuses a wrong shape or a missing pair."""
    k = len(names)
    try:
        m = np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"gains: expected a square matrix of numbers (rows teacher, columns student): {e}") from None
    if k < 2 or m.shape != (k, k):
        raise ConfigError(f"gains: expected a {k} x {k} matrix for {k} names (at least 2), got shape {m.shape}")
    np.fill_diagonal(m, np.nan)
    if not np.isfinite(m[~np.eye(k, dtype=bool)]).all():
        raise ConfigError("gains: every teacher-student pair off the diagonal needs a finite value")
    return m


def pair_gain_heatmap(names: Sequence[str], gains: Sequence[Sequence[float | None]] | np.ndarray,
                      title: str | None = None, kind: str = "gain") -> go.Figure:
    """Heatmap of a teacher (row) x student (column) matrix: ``kind="gain"`` the student's accuracy change in points
    on a diverging scale centred on 0 (red: the student lost, blue: it gained), ``kind="complementary"`` the % of
    samples the teacher gets right and the student wrong on a sequential scale from 0; each cell shows its value,
    the diagonal (a model and itself) is blank."""
    if kind not in KINDS:
        raise ConfigError(f"kind: {kind!r} is not a matrix kind; valid: {', '.join(KINDS)}")
    m = _matrix(names, gains)
    default_title, bar_title, label = KINDS[kind]
    off = m[~np.eye(len(names), dtype=bool)]
    if kind == "gain":
        top = max(float(np.abs(off).max()), 0.5)  # at least half a point: all-zero gains get a readable scale
        scale = dict(colorscale=DIVERGING, zmin=-top, zmax=top, zmid=0.0)
        fmt, unit = "{:+.1f}", " points"
    else:
        scale = dict(colorscale=SEQUENTIAL, zmin=0.0, zmax=max(float(off.max()), 0.5))
        fmt, unit = "{:.1f}", "%"
    text = [["" if np.isnan(v) else fmt.format(v) for v in row] for row in m]
    labels = [plotly_text(n) for n in names]
    fig = go.Figure(go.Heatmap(
        z=m, x=labels, y=labels, text=text, texttemplate="%{text}", hoverongaps=False, xgap=2, ygap=2,
        colorbar=dict(title=bar_title), **scale,
        hovertemplate=f"teacher %{{y}}<br>student %{{x}}<br>{label} %{{text}}{unit}<extra></extra>"))
    fig.update_yaxes(type="category", autorange="reversed", title_text="teacher", showgrid=False)
    fig.update_xaxes(type="category", title_text="student (transferred into)", showgrid=False, tickangle=-30)
    return apply_theme(fig, title if title is not None else default_title,
                       height=max(360, 48 * len(names) + 200))
