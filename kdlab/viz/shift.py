"""Figures of distillation under shift: every method's accuracy on every benchmark target, the metrics' Kendall taus
per target, and grouped bars of any study's table (method x test set). Pure: data in, ``go.Figure`` out."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from kdlab.errors import ConfigError
from kdlab.viz.theme import DIVERGING, LEGEND_RIGHT, apply_theme, plotly_text, sequence

METHOD_NAMES = {"scratch": "scratch", "finetune": "fine-tune", "fixmatch": "FixMatch", "uniform": "uniform",
                "nearest": "DistillNearest", "weighted": "DistillWeighted"}


def grouped_bars(rows: Sequence[Mapping[str, Any]], x: str, series: str, value: str, title: str,
                 percent: bool = True, y_title: str = "accuracy (%)") -> go.Figure:
    """Bars of ``value`` per ``x`` category, one colour per ``series`` (rows as a study's ``table`` gives them);
    ``percent`` shows fractions as %."""
    if not rows or any(k not in rows[0] for k in (x, series, value)):
        raise ConfigError(f"rows: expected table rows with the keys {x!r}, {series!r} and {value!r}")
    xs = list(dict.fromkeys(str(r[x]) for r in rows))
    names = list(dict.fromkeys(str(r[series]) for r in rows))
    f = 100.0 if percent else 1.0
    fig = go.Figure()
    for name, color in zip(names, sequence(len(names)), strict=True):
        got = {str(r[x]): r[value] for r in rows if str(r[series]) == name}
        ys = [f * float(got[c]) if got.get(c) is not None else None for c in xs]
        fig.add_trace(go.Bar(x=[plotly_text(c) for c in xs], y=ys, name=plotly_text(name), marker_color=color,
                             hovertemplate=f"{plotly_text(name)}<br>%{{x}}: %{{y:.2f}}<extra></extra>"))
    fig.update_xaxes(type="category", tickangle=-30, automargin=True)
    fig.update_yaxes(title_text=y_title, rangemode="tozero")
    return apply_theme(fig, title, height=460, barmode="group", **LEGEND_RIGHT)


def benchmark_bars(targets: Sequence[Mapping[str, Any]], title: str = "Test accuracy per target") -> go.Figure:
    """Every method's test accuracy on every benchmark target (``study_benchmark``'s ``targets``)."""
    rows = [{"target": t["target"], "method": METHOD_NAMES.get(m, m), "acc": a}
            for t in targets for m, a in t["methods"].items()]
    return grouped_bars(rows, "target", "method", "acc", title)


def tau_heatmap(targets: Sequence[Mapping[str, Any]],
                title: str = "Kendall τ of each metric vs single-source accuracy") -> go.Figure:
    """Targets x metrics heat map of Kendall tau (diverging at 0): which metric ranks the sources well where."""
    if not targets:
        raise ConfigError("targets: expected at least one benchmark target")
    metrics = list(targets[0]["taus"])
    z = np.array([[np.nan if t["taus"].get(m) is None else float(t["taus"][m]) for m in metrics] for t in targets])
    text = np.vectorize(lambda v: "" if np.isnan(v) else f"{v:.2f}")(z)
    fig = go.Figure(go.Heatmap(
        z=z, x=[plotly_text(m) for m in metrics], y=[plotly_text(t["target"]) for t in targets], zmin=-1, zmax=1,
        zmid=0, colorscale=DIVERGING, text=text, texttemplate="%{text}", colorbar=dict(title="τ"),
        hovertemplate="target %{y}<br>metric %{x}<br>τ %{z:.3f}<extra></extra>"))
    fig.update_yaxes(type="category", autorange="reversed", title_text="target")
    fig.update_xaxes(type="category", title_text="metric")
    return apply_theme(fig, title, height=max(360, 34 * len(targets) + 200))


def study_figures(saved: Mapping[str, Any]) -> dict[str, go.Figure]:
    """The figures of a ``shift`` job's saved studies (``{"studies": {name: study dict}}``), keyed by what they
    show; the dashboard page, the notebook widget and the report draw the same ones."""
    studies = saved.get("studies") or {}
    out: dict[str, go.Figure] = {}
    bench = studies.get("benchmark")
    if bench and bench.get("targets"):
        out["benchmark"] = benchmark_bars(bench["targets"], f"Test accuracy per target ({bench['labels_per_class']} "
                                                            "labels per class)")
        out["taus"] = tau_heatmap(bench["targets"])
    pairs = studies.get("complementary")
    if pairs:
        from kdlab.viz.pair_gains import pair_gain_heatmap

        out["pair_gains"] = pair_gain_heatmap(pairs["names"], pairs["gains"],
                                              title="Pair gains: which model (row) can teach which (column)")
        out["complementary"] = pair_gain_heatmap(pairs["names"], pairs["complementary"], kind="complementary")
    free = studies.get("source_free")
    if free and free.get("curves"):
        from kdlab.viz.adaptation import adaptation_curves

        out["adaptation"] = adaptation_curves(free["curves"], free.get("curve_metric"),
                                              title="Source-free adaptation: target score by epoch")
    for name, label in (("meta_dmoe", "Meta-DMoE, leave one domain out"), ("kd3", "KD3 on a shifted web pool"),
                        ("hard", "HARD: accuracy on shifts the student never saw")):
        study = studies.get(name)
        if study and study.get("table"):
            x, series, value = BAR_KEYS[name]
            out[name] = grouped_bars(study["table"], x, series, value, label)
    return out


#: (category, series, value) keys of the table rows of the studies drawn as grouped bars
BAR_KEYS = {"meta_dmoe": ("held_out", "method", "accuracy"), "kd3": ("test set", "method", "accuracy"),
            "hard": ("test set", "method", "accuracy")}
