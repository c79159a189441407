"""Frequency figures: band-accuracy curves, Fourier heat maps side by side, feature-map spectra and graph
spectral energy per model. Inputs are the results of ``kdlab.analysis.frequency`` / ``fourier_heatmap`` /
``graph_frequency`` (DataFrames and ``FourierHeatmap`` objects); colours follow the model's role."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdlab.errors import ConfigError
from kdlab.viz.theme import SEQUENTIAL, TITLE_PX, apply_theme, plotly_text, run_colors

# short: two panels side by side in a narrow figure (the x axis title says what the cutoff is)
BAND_TITLES = {"low": "low-pass filtered inputs", "high": "high-pass filtered inputs"}
BAND_METRICS = ("acc", "agreement")
HEATMAP_KINDS = ("error", "change")
TWO_LINE_TOP = TITLE_PX + 56  # top margin above subplot titles of two lines
# legend under the plot: above it, it would collide with the subplot titles
BOTTOM_LEGEND = {"legend": dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0.0),
                 "margin": dict(b=110)}


def _need(df: pd.DataFrame, cols: tuple[str, ...], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ConfigError(f"{what}: missing column {missing[0]!r}; expected {list(cols)}")


def band_accuracy_curves(bands: pd.DataFrame, metric: str = "acc", title: str | None = None) -> go.Figure:
    """Accuracy (or agreement with the teacher) of each model against the cutoff, one panel per filter.

    ``bands`` is ``kdlab.analysis.frequency.band_curves``' DataFrame; the unfiltered accuracy is a dotted line.
    """
    if metric not in BAND_METRICS:
        raise ConfigError(f"metric: {metric!r} is not one of {list(BAND_METRICS)}")
    _need(bands, ("model", "filter", "cutoff", metric), "bands")
    filters = [f for f in ("low", "high") if f in set(bands["filter"])]
    fig = make_subplots(rows=1, cols=max(len(filters), 1), shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=[BAND_TITLES[f] for f in filters])
    models = list(dict.fromkeys(bands["model"]))
    colors = run_colors(models)
    for c, f in enumerate(filters, start=1):
        for m in models:
            d = bands[(bands["model"] == m) & (bands["filter"] == f)].sort_values("cutoff")
            fig.add_trace(go.Scatter(x=d["cutoff"], y=d[metric], mode="lines+markers", name=plotly_text(m),
                                     legendgroup=m, showlegend=c == 1, line=dict(color=colors[m]),
                                     hovertemplate=f"{plotly_text(m)}<br>cutoff %{{x:.2f}}<br>{metric} %{{y:.3f}}"
                                                   "<extra></extra>"), row=1, col=c)
            clean = bands[(bands["model"] == m) & (bands["filter"] == "none")]
            if len(clean) and np.isfinite(clean[metric].iloc[0]):
                fig.add_hline(y=float(clean[metric].iloc[0]), line=dict(color=colors[m], dash="dot", width=1),
                              row=1, col=c)
        fig.update_xaxes(title_text="cutoff (fraction of Nyquist)", row=1, col=c)
    fig.update_yaxes(title_text="accuracy" if metric == "acc" else "agreement with teacher", range=[0, 1.02],
                     row=1, col=1)
    return apply_theme(fig, title or ("Band accuracy" if metric == "acc" else "Band agreement with the teacher"),
                       height=440, **BOTTOM_LEGEND)


def fourier_heatmaps(maps: Mapping[str, Any], kind: str = "error", title: str | None = None) -> go.Figure:
    """Fourier heat maps side by side on one colour scale (``kind``: error rate, or normalised output change).

    ``maps``: name -> ``FourierHeatmap``. Axes are frequencies in cycles per image; DC is in the centre.
    """
    if kind not in HEATMAP_KINDS:
        raise ConfigError(f"kind: {kind!r} is not one of {list(HEATMAP_KINDS)}")
    if not maps:
        raise ConfigError("maps: give at least one Fourier heat map")
    names = list(maps)
    z = {n: (maps[n].error if kind == "error" else maps[n].change_normalized) for n in names}
    top = max(float(np.max(v)) for v in z.values()) or 1.0
    fig = make_subplots(rows=1, cols=len(names), horizontal_spacing=0.04,
                        subplot_titles=[f"{plotly_text(n)}<br>clean error {maps[n].clean_error:.1%}" for n in names])
    for c, n in enumerate(names, start=1):
        fy, fx = maps[n].frequencies
        fig.add_trace(go.Heatmap(z=z[n], x=fx, y=fy, zmin=0, zmax=top, colorscale=SEQUENTIAL, name=plotly_text(n),
                                 showscale=c == len(names),
                                 colorbar=dict(title=dict(text="error rate" if kind == "error" else "change / max")),
                                 hovertemplate="f_x %{x}, f_y %{y}<br>%{z:.3f}<extra></extra>"), row=1, col=c)
        fig.update_xaxes(constrain="domain", row=1, col=c)
        fig.update_yaxes(scaleanchor=f"x{c if c > 1 else ''}", constrain="domain", row=1, col=c)
    # the axes mean the same in every panel: titled once, on the first (side by side they would run together)
    fig.update_xaxes(title_text="horizontal frequency", row=1, col=1)
    fig.update_yaxes(title_text="vertical frequency", row=1, col=1)
    eps = maps[names[0]].eps
    head = "Fourier heat map: error rate" if kind == "error" else "Fourier heat map: output change"
    return apply_theme(fig, title or f"{head} (perturbation norm {eps:g}, {maps[names[0]].n_images} images)",
                       height=400, margin=dict(t=TWO_LINE_TOP))


def feature_spectra(spectra: pd.DataFrame, title: str = "Feature-map spectral energy") -> go.Figure:
    """Energy fraction per radial frequency bin of each model's stage feature maps (one panel per model)."""
    _need(spectra, ("model", "layer", "radius", "energy"), "spectra")
    models = list(dict.fromkeys(spectra["model"]))
    colors = run_colors(models)
    fig = make_subplots(rows=1, cols=max(len(models), 1), shared_yaxes=True, horizontal_spacing=0.05,
                        subplot_titles=[plotly_text(m) for m in models])
    for c, m in enumerate(models, start=1):
        d = spectra[spectra["model"] == m]
        layers = list(dict.fromkeys(d["layer"]))
        for k, layer in enumerate(layers):
            e = d[d["layer"] == layer].sort_values("radius")
            fig.add_trace(go.Scatter(x=e["radius"], y=e["energy"], mode="lines+markers",
                                     name=f"{plotly_text(m)} · {plotly_text(layer)}",
                                     line=dict(color=colors[m], width=1 + 2 * (k + 1) / len(layers)),
                                     opacity=0.35 + 0.65 * (k + 1) / len(layers),
                                     hovertemplate=f"{plotly_text(layer)}<br>radius %{{x:.2f}}<br>energy %{{y:.3f}}"
                                                   "<extra></extra>"), row=1, col=c)
        fig.update_xaxes(title_text="radius (fraction of Nyquist)", row=1, col=c)
    fig.update_yaxes(title_text="share of the map's power", row=1, col=1)
    return apply_theme(fig, title, height=420, **BOTTOM_LEGEND)


def graph_energy_bars(table: pd.DataFrame, title: str = "Graph spectral energy of the predictions") -> go.Figure:
    """Per model: share of high-frequency energy of its node predictions, and how similar its high-frequency
    part is to the teacher's (``kdlab.analysis.graph_frequency.compare_models``; optional columns ``*_std``)."""
    _need(table, ("model", "high_fraction"), "table")
    models = [str(m) for m in table["model"]]
    colors = run_colors(models, roles={m: "teacher" for m in models if "gcn" in m.lower() or "gnn" in m.lower()
                                       or "sage" in m.lower()})
    panels = [("high_fraction", "high-frequency share<br>of the energy")]
    if "hf_similarity" in table.columns and table["hf_similarity"].notna().any():
        panels.append(("hf_similarity", "high-frequency similarity<br>to the teacher"))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[1] for p in panels], horizontal_spacing=0.1)
    for c, (col, _label) in enumerate(panels, start=1):
        err = table[f"{col}_std"] if f"{col}_std" in table.columns else None
        fig.add_trace(go.Bar(x=[plotly_text(m) for m in models], y=table[col], marker_color=[colors[m] for m in models],
                             error_y=dict(type="data", array=err) if err is not None else None,
                             showlegend=False, name=col,
                             hovertemplate="%{x}<br>%{y:.3f}<extra></extra>"), row=1, col=c)
    return apply_theme(fig, title, height=400, margin=dict(t=TWO_LINE_TOP))
