"""Training curves of one run, the same metric across runs, and final metrics over seeds."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from kdlab.errors import ConfigError
from kdlab.viz.data import as_history, line_mode, loss_terms, series
from kdlab.viz.theme import (
    BASELINE,
    MARGIN,
    STUDENT,
    TEACHER,
    TITLE_PX,
    apply_theme,
    axis_ref,
    grid_layout,
    legend_below,
    plotly_text,
    run_colors,
    sequence,
    with_alpha,
)

# panel -> the keys it draws (loss terms are found in the data); a panel without data is left out
PANELS: tuple[str, ...] = ("accuracy", "agreement", "loss", "loss terms", "learning rate", "throughput")
_FIXED: dict[str, tuple[str, ...]] = {
    "accuracy": ("train/acc", "val/acc"),
    "loss": ("train/loss", "val/loss"),
    "learning rate": ("lr",),
    "throughput": ("throughput",),
}


def _panel_keys(h: pd.DataFrame) -> dict[str, list[str]]:
    present = [c for c in h.columns if h[c].notna().any()]
    keys = {p: [k for k in _FIXED.get(p, ()) if k in present] for p in PANELS}
    keys["agreement"] = [k for k in present if k.endswith("agreement")]
    keys["loss terms"] = loss_terms(h)
    return keys


# pixel layout of the panel grid: figures are drawn at any width, so the vertical room is fixed in px (the
# horizontal gaps, fractions, fit the y tick labels down to a ~450 px wide figure)
ROW_PX = 230  # plot height of one row of panels
ROW_GAP_PX = 66  # between rows: the x tick labels of the row above, then the subplot titles of the row below
SUBPLOT_TITLE_PX = 28  # above the top row: its subplot titles
H_SPACE = 0.12


def training_curves(metrics: Any, title: str = "Training curves", teacher_acc: float | None = None,
                    cols: int = 2) -> go.Figure:
    """One subplot per panel that has data: accuracy (train/val, and a dashed ``teacher`` reference line
    at ``teacher_acc``), agreement with the teacher, total loss (train/val), one trace per loss term
    (``train/<term>``), learning rate, throughput.

    ``metrics``: a history list of dicts, a result dict, or a tidy / wide metrics DataFrame (see
    ``kdlab.viz.data.as_history``). Every trace has ``meta={"panel": ..., "key": ...}``; trace names are
    the metric keys (``teacher`` for the reference line).

    Layout: the subplot titles name the panels (no y axis titles), the x axis title sits under the bottom
    panel of each column and the legend under the grid; the height grows with the rows, so titles, tick
    labels and legend never overlap at any width (the legend wraps downwards).
    """
    h = as_history(metrics)
    keys = _panel_keys(h)
    panels = [p for p in PANELS if keys[p]]
    if not panels:
        return empty_figure(title, "no metrics yet: the curves appear when the run logs its first epoch")
    cols = max(1, min(cols, len(panels)))
    rows = math.ceil(len(panels) / cols)
    plot_px = rows * ROW_PX + (rows - 1) * ROW_GAP_PX
    layout = grid_layout(rows, cols, panels, h_space=H_SPACE if cols > 1 else 0.0,
                         v_space=ROW_GAP_PX / plot_px if rows > 1 else 0.0)
    x_name = str(h.index.name or "epoch")
    term_colors = dict(zip(keys["loss terms"], sequence(len(keys["loss terms"])), strict=True))
    traces: list[dict[str, Any]] = []
    for k, panel in enumerate(panels, start=1):
        hover = "%{y:.4g} samples/s" if panel == "throughput" else "%{y:.4g}"
        axes = dict(xaxis=axis_ref(k, "x"), yaxis=axis_ref(k, "y"), legendgroup=panel, hovertemplate=hover)
        for key in keys[panel]:
            x, y = series(h, key)
            traces.append(dict(type="scatter", x=x, y=y, name=plotly_text(key), mode=line_mode(x),
                               meta={"panel": panel, "key": key}, line=_line(panel, key, term_colors), **axes))
        if panel == "accuracy" and teacher_acc is not None and len(h.index):
            lo, hi = float(h.index.min()), float(h.index.max())
            traces.append(dict(type="scatter", x=[lo, hi], y=[float(teacher_acc)] * 2, name="teacher",
                               mode="lines", meta={"panel": panel, "key": "teacher"},
                               line=dict(color=TEACHER, dash="dash", width=2), **axes))
        if k + cols > len(panels):  # nothing under this panel: its column's x axis title
            layout[axis_ref(k, "xaxis")]["title"] = {"text": x_name}
        y_axis = layout[axis_ref(k, "yaxis")]
        lr = h["lr"].dropna() if panel == "learning rate" else None
        if lr is not None and (lr > 0).all() and lr.nunique() > 1 and lr.max() / lr.min() > 50:
            y_axis["type"] = "log"
    top = TITLE_PX + SUBPLOT_TITLE_PX
    below = legend_below(top + plot_px + MARGIN["b"], top=top, rows=2 if len(traces) > 6 else 1)
    height = top + plot_px + below["margin"]["b"]
    below["legend"]["traceorder"] = "normal"  # one flat row of entries, not a block per panel
    layout.update(below)
    # one validated construction: make_subplots + add_trace per trace cost ~4x more, every second in the
    # dashboard's live view
    fig = go.Figure(data=traces, layout=layout)
    return apply_theme(fig, title, height=height, hovermode="x unified")


def empty_figure(title: str | None, message: str, height: int = 260) -> go.Figure:
    """A figure without axes that says ``message`` (what to do, or what to wait for) where the plot would be."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14, color="#666666"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return apply_theme(fig, title, height=height)


def _line(panel: str, key: str, term_colors: dict[str, str]) -> dict[str, Any]:
    if panel == "loss terms":
        return dict(color=term_colors[key])
    dash = "dot" if key.startswith("train/") else "solid"
    if panel == "agreement":
        return dict(color=TEACHER, dash=dash)
    if panel in ("learning rate", "throughput"):
        return dict(color=BASELINE)
    return dict(color=STUDENT, dash=dash)


def compare_runs(runs: Mapping[str, Any], key: str = "val/acc", title: str | None = None,
                 roles: Mapping[str, str] | None = None, teacher_acc: float | None = None) -> go.Figure:
    """``key`` of every run overlaid, one trace per run (named by its dict key, in order).

    Each value of ``runs`` is anything ``as_history`` reads. Colours: a run whose name (or ``roles``
    entry) is a role (``teacher``, ``student``, ``vanilla``/``baseline``) takes the role's colour, the
    rest the qualitative sequence. Runs without ``key`` are listed in the title, not drawn.
    """
    colors = run_colors(list(runs), dict(roles or {}))
    fig = go.Figure()
    missing = []
    x_name = "epoch"
    for name, metrics in runs.items():
        h = as_history(metrics)
        if key not in h.columns or not h[key].notna().any():
            missing.append(str(name))
            continue
        x_name = str(h.index.name or "epoch")
        x, y = series(h, key)
        fig.add_trace(go.Scatter(x=x, y=y, name=plotly_text(name), mode=line_mode(x),
                                 meta={"run": str(name), "key": key},
                                 line=dict(color=colors[name]), hovertemplate="%{y:.4g}"))
    if teacher_acc is not None and fig.data:
        xs = np.concatenate([np.asarray(t.x, dtype=float) for t in fig.data])
        fig.add_trace(go.Scatter(x=[xs.min(), xs.max()], y=[float(teacher_acc)] * 2, name="teacher", mode="lines",
                                 meta={"run": "teacher", "key": key}, line=dict(color=TEACHER, dash="dash")))
    text = title or f"{plotly_text(key)} across runs"
    if missing:
        shown = ", ".join(plotly_text(m) for m in missing[:5])
        text += f" (no {plotly_text(key)}: {shown}{' ...' if len(missing) > 5 else ''})"
    if not fig.data:
        return empty_figure(text, f"none of these runs logged {plotly_text(key)}: pick another metric or other runs"
                            if runs else "no runs to compare: pick some")
    fig.update_xaxes(title_text=x_name)
    fig.update_yaxes(title_text=plotly_text(key))
    height = 440
    # the legend under the plot: one entry per run wraps to more rows on a narrow figure without reaching the title
    return apply_theme(fig, text, height=height, hovermode="x unified", **legend_below(height, top=TITLE_PX + 16))


def _pick(table: pd.DataFrame, wanted: str | None, choices: tuple[str, ...], what: str) -> str | None:
    if wanted is not None:
        if wanted not in table.columns:
            raise ConfigError(f"{what}: column {wanted!r} is not in the table; columns: {list(table.columns)}")
        return wanted
    return next((c for c in choices if c in table.columns), None)


def summarize_seeds(table: pd.DataFrame, value: str = "value", by: list[str] | None = None) -> pd.DataFrame:
    """Mean, sample standard deviation (ddof=1; 0 for a single seed) and count of ``value`` per ``by`` group."""
    def std(s: pd.Series) -> float:
        return float(s.std(ddof=1)) if s.count() > 1 else 0.0

    if not by:
        v = table[value].astype("float64")
        return pd.DataFrame({"mean": [float(v.mean())], "std": [std(v)], "n": [int(v.count())]})
    return (table.groupby(by, sort=False, dropna=False)[value]
            .agg(mean="mean", std=std, n="count").reset_index())


def final_metric_bars(table: pd.DataFrame, value: str = "value", method: str | None = None,
                      group: str | None = None, title: str = "Final metric over seeds",
                      value_label: str | None = None, roles: Mapping[str, str] | None = None) -> go.Figure:
    """Bars of the mean of ``value`` per method with ± one sample standard deviation (ddof=1) over seeds.

    ``table`` has one row per seed of each method (a ``seed`` column is not needed, every row counts):
    with both a method column (``method``, else ``name`` or ``run``) and a ``group`` column (such as a
    dataset) the bars are grouped (x = group, one colour per method); with only one of them, x is that
    column. Each bar's ``customdata`` holds ``[n, "v1, v2, ..."]`` (the individual values).
    """
    if value not in table.columns:
        raise ConfigError(f"value: column {value!r} is not in the table; columns: {list(table.columns)}")
    method_col = _pick(table, method, ("method", "name", "run"), "method")
    group_col = _pick(table, group, ("group",), "group")
    if method_col is None and group_col is None:
        raise ConfigError(f"table: needs a 'method' or 'group' column; columns: {list(table.columns)}")
    if method_col is None:
        method_col, group_col = group_col, None
    by = [c for c in (group_col, method_col) if c is not None]
    df = table.copy()
    for c in by:
        df[c] = df[c].astype(str)
    df[value] = pd.to_numeric(df[value], errors="coerce").astype("float64")
    stats = summarize_seeds(df, value, by)
    methods = list(dict.fromkeys(df[method_col]))
    colors = run_colors(methods, dict(roles or {}))
    fig = go.Figure()
    for m in methods:
        s = stats[stats[method_col] == m]
        x = s[group_col if group_col else method_col].tolist()
        custom = []
        for xv, n in zip(x, s["n"], strict=True):
            rows = df[(df[method_col] == m) & (df[group_col] == xv if group_col else True)]
            custom.append([int(n), ", ".join(f"{v:.4g}" for v in rows[value].dropna())])
        fig.add_trace(go.Bar(x=[plotly_text(v) for v in x], y=s["mean"].to_numpy(float), name=plotly_text(m),
                             marker_color=colors[m],
                             marker_line=dict(color=with_alpha("#000000", 0.35), width=1),
                             error_y=dict(type="data", array=s["std"].to_numpy(float), visible=True, thickness=1.5),
                             customdata=custom, meta={"method": m},
                             hovertemplate="%{x}: %{y:.4g} ± %{error_y.array:.3g}<br>n=%{customdata[0]}: "
                                           "%{customdata[1]}<extra>%{fullData.name}</extra>"))
    fig.update_yaxes(title_text=plotly_text(value_label or value))
    fig.update_xaxes(type="category")
    fig.update_layout(barmode="group", showlegend=group_col is not None)
    return apply_theme(fig, title, height=420)
