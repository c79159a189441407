"""Figures of source-free adaptation: each method's target score after every epoch, one panel per target, the
source's level (epoch 0) as a dashed line. Pure: data in, ``go.Figure`` out."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from kdlab.errors import ConfigError
from kdlab.viz.curves import H_SPACE, ROW_GAP_PX, ROW_PX, SUBPLOT_TITLE_PX
from kdlab.viz.theme import (
    BASELINE,
    MARGIN,
    TITLE_PX,
    apply_theme,
    axis_ref,
    grid_layout,
    legend_below,
    plotly_text,
    sequence,
)


def adaptation_curves(curves: Mapping[str, Mapping[str, Sequence[float]]],
                      metric: Mapping[str, str] | None = None, title: str = "Target score during adaptation",
                      cols: int = 2) -> go.Figure:
    """Lines of target score (%) against adaptation epoch, one panel per target and one line per method (a
    method keeps its colour in every panel), with the source's score (each curve's epoch 0) dashed grey.

    ``curves``: {target: {method: [score at epoch 0 (the source), 1, ...]}} as fractions, e.g. a
    ``study_source_free`` result's ``"curves"``; ``metric``: {target: "accuracy" | "H-score"} names each panel's
    score (default accuracy). Traces carry ``meta={"target": ..., "method": ...}`` (method ``source`` for the
    dashed line).
    """
    if not curves or any(not by_method for by_method in curves.values()):
        raise ConfigError("curves: expected {target: {method: [score per epoch]}} with at least one method")
    for target, by_method in curves.items():
        for method, values in by_method.items():
            if len(values) < 1 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise ConfigError(f"curves: {target!r} / {method!r} needs finite scores, got {list(values)}")
    metric = dict(metric or {})
    targets = list(curves)
    methods = list(dict.fromkeys(m for by_method in curves.values() for m in by_method))
    colors = dict(zip(methods, sequence(len(methods)), strict=True))
    cols = max(1, min(cols, len(targets)))
    rows = math.ceil(len(targets) / cols)
    plot_px = rows * ROW_PX + (rows - 1) * ROW_GAP_PX
    panels = [plotly_text(t) for t in targets]
    layout = grid_layout(rows, cols, panels, h_space=H_SPACE if cols > 1 else 0.0,
                         v_space=ROW_GAP_PX / plot_px if rows > 1 else 0.0)
    traces: list[dict[str, Any]] = []
    for k, target in enumerate(targets, start=1):
        axes = dict(xaxis=axis_ref(k, "x"), yaxis=axis_ref(k, "y"))
        by_method = curves[target]
        first = next(iter(by_method.values()))
        longest = max(len(v) for v in by_method.values())
        label = plotly_text(metric.get(target, "accuracy"))
        traces.append(dict(type="scatter", x=[0, max(longest - 1, 1)], y=[100 * float(first[0])] * 2,
                           name="source (before)", mode="lines", legendgroup="source", showlegend=k == 1,
                           line=dict(color=BASELINE, dash="dash", width=2),
                           meta={"target": target, "method": "source"},
                           hovertemplate=f"source: %{{y:.1f}}% {label}<extra></extra>", **axes))
        for method, values in by_method.items():
            traces.append(dict(type="scatter", x=list(range(len(values))), y=[100 * float(v) for v in values],
                               name=plotly_text(method), mode="lines+markers", legendgroup=method,
                               showlegend=k == 1 or method not in (m for t in targets[:k - 1] for m in curves[t]),
                               line=dict(color=colors[method]), meta={"target": target, "method": method},
                               hovertemplate=(f"{plotly_text(method)} epoch %{{x}}: %{{y:.1f}}% {label}"
                                              "<extra></extra>"), **axes))
        layout[axis_ref(k, "yaxis")]["title"] = {"text": f"{label} (%)"}
        layout[axis_ref(k, "xaxis")]["dtick"] = max(1, math.ceil((longest - 1) / 10))
        if k + cols > len(targets):  # nothing under this panel: its column's x axis title
            layout[axis_ref(k, "xaxis")]["title"] = {"text": "adaptation epoch"}
    top = TITLE_PX + SUBPLOT_TITLE_PX
    below = legend_below(top + plot_px + MARGIN["b"], top=top)
    below["legend"]["traceorder"] = "normal"
    layout.update(below)
    return apply_theme(go.Figure(data=traces, layout=layout), plotly_text(title),
                       height=top + plot_px + below["margin"]["b"])
