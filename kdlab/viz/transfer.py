"""Figures of source selection: source-by-metric score matrix, metric ranking vs realised accuracy (with
Kendall tau), relevance weights, and each method's accuracy (mean +- std over seeds). Pure: data in,
``go.Figure`` out."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from scipy.stats import kendalltau

from kdlab.errors import ConfigError
from kdlab.viz.theme import BASELINE, STUDENT, apply_theme, plotly_text, sequence

BASELINE_METHODS = ("scratch", "finetune", "fixmatch", "uniform")


def _frame(scores: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(scores, pd.DataFrame) or scores.empty:
        raise ConfigError("scores: expected a non-empty DataFrame from rank_sources (sources x metrics)")
    return scores.astype(float)


def score_matrix(scores: pd.DataFrame, title: str = "Source scores by metric") -> go.Figure:
    """Heatmap of sources x metrics; colour is the within-metric rank-normalised score (1 = best source),
    the cell text the raw score, so metrics on different scales read side by side."""
    df = _frame(scores)
    ranks = df.rank(axis=0, pct=True)
    z = ranks.to_numpy()
    text = np.vectorize(lambda v: f"{v:.3g}")(df.to_numpy())
    fig = go.Figure(go.Heatmap(
        z=z, x=[plotly_text(c) for c in df.columns], y=[plotly_text(i) for i in df.index], zmin=0, zmax=1,
        text=text, texttemplate="%{text}", colorbar=dict(title="rank<br>(1 = best)"),
        hovertemplate="source %{y}<br>metric %{x}<br>score %{text}<extra></extra>"))
    fig.update_yaxes(type="category", autorange="reversed", title_text="source")
    fig.update_xaxes(type="category", title_text="metric")
    return apply_theme(fig, title, height=max(320, 40 * len(df) + 160))


def ranking_scatter(scores: pd.DataFrame, realised: Mapping[str, float] | pd.Series, metric: str,
                    title: str | None = None) -> go.Figure:
    """Scatter of one metric's score against the accuracy realised by distilling from each source alone;
    Kendall tau of the two rankings in the title."""
    df = _frame(scores)
    if metric not in df.columns:
        raise ConfigError(f"metric: {metric!r} is not a column of the scores; valid: {list(df.columns)}")
    acc = pd.Series(realised, dtype=float)
    common = [s for s in df.index if s in acc.index]
    if len(common) < 2:
        raise ConfigError("realised: need the accuracy of at least 2 scored sources")
    x, y = df.loc[common, metric].to_numpy(), acc[common].to_numpy()
    tau = float(kendalltau(x, y).statistic)
    # labels lean into the plot: right of the leftmost third of the points, left of the rightmost third (centred,
    # the label of an edge point would run over the axis' tick labels)
    order = np.argsort(np.argsort(x, kind="stable"), kind="stable") / max(len(x) - 1, 1)
    where = ["top right" if q < 1 / 3 else "top left" if q > 2 / 3 else "top center" for q in order]
    fig = go.Figure(go.Scatter(x=x, y=100 * y, mode="markers+text", text=[plotly_text(s) for s in common],
                               textposition=where, marker=dict(size=10, color=STUDENT),
                               hovertemplate="%{text}<br>score %{x:.4g}<br>accuracy %{y:.1f}%<extra></extra>"))
    fig.update_xaxes(title_text=plotly_text(metric))
    fig.update_yaxes(title_text="accuracy distilling from the source alone (%)")
    return apply_theme(fig, title or f"{plotly_text(metric)} vs realised accuracy · Kendall τ = {tau:.2f}", height=420)


def kendall_bars(taus: Mapping[str, float], title: str = "Kendall τ of each metric's ranking") -> go.Figure:
    """Bars of Kendall tau per metric (between its ranking and the realised accuracies)."""
    if not taus:
        raise ConfigError("taus: expected {metric: tau} for at least one metric")
    names = list(taus)
    fig = go.Figure(go.Bar(x=[plotly_text(n) for n in names], y=[taus[n] for n in names],
                           marker_color=sequence(len(names)), hovertemplate="%{x}: τ = %{y:.3f}<extra></extra>"))
    fig.update_yaxes(range=[-1, 1], title_text="Kendall τ")
    return apply_theme(fig, title, height=380)


def weight_bars(weights: Mapping[str, float] | pd.Series, title: str = "Source weights") -> go.Figure:
    """Bars of the relevance weights of the sources (sorted, largest first)."""
    w = pd.Series(weights, dtype=float).sort_values(ascending=False)
    if w.empty or not np.isfinite(w.to_numpy()).all():
        raise ConfigError("weights: expected finite weights for at least one source")
    fig = go.Figure(go.Bar(x=[plotly_text(i) for i in w.index], y=w.to_numpy(), marker_color=STUDENT,
                           hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_yaxes(title_text="weight", rangemode="tozero")
    fig.update_xaxes(type="category", title_text="source")
    return apply_theme(fig, title, height=380)


def method_accuracy(results: Mapping[str, Sequence[float]] | pd.DataFrame,
                    title: str = "Test accuracy by method (mean ± std over seeds)") -> go.Figure:
    """Bars of mean accuracy with std error bars per method; ``results`` maps method -> per-seed accuracies,
    or is a DataFrame with ``method`` and ``test_acc`` columns. Baselines are grey, the paper's methods orange."""
    if isinstance(results, pd.DataFrame):
        if not {"method", "test_acc"} <= set(results.columns):
            raise ConfigError("results: a DataFrame needs 'method' and 'test_acc' columns")
        results = {m: list(g["test_acc"]) for m, g in results.groupby("method", sort=False)}
    if not results or any(len(v) == 0 for v in results.values()):
        raise ConfigError("results: expected at least one accuracy per method")
    names = list(results)
    mean = [100 * float(np.mean(results[m])) for m in names]
    std = [100 * float(np.std(results[m], ddof=1)) if len(results[m]) > 1 else 0.0 for m in names]
    colors = [BASELINE if m in BASELINE_METHODS else STUDENT for m in names]
    fig = go.Figure(go.Bar(x=[plotly_text(m) for m in names], y=mean, error_y=dict(type="data", array=std),
                           marker_color=colors, text=[f"{a:.1f}±{s:.1f}" for a, s in zip(mean, std, strict=True)],
                           textposition="outside", hovertemplate="%{x}: %{y:.2f}%<extra></extra>"))
    fig.update_yaxes(title_text="test accuracy (%)", rangemode="tozero")
    return apply_theme(fig, title, height=420)
