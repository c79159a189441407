"""Figures of trajectory matching (MTT, FTD, AST): the expert's and the synthetic-trained student's paths in a 2-D
PCA of parameter space, the normalised matching distance over distillation iterations (and the learned synthetic
learning rate), and the student's distance to the expert per expert epoch. Inputs are arrays (a set's ``extras``
and ``meta``), numpy or torch."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from kdlab.errors import ShapeError
from kdlab.viz.theme import BASELINE, STUDENT, TEACHER, apply_theme, plotly_text, run_colors


def _array(a: Any, name: str, ndim: int) -> np.ndarray:
    out = np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=np.float64)
    if out.ndim != ndim or (ndim == 2 and out.shape[1] != 2) or len(out) == 0:
        want = "(T, 2)" if ndim == 2 else "(T,)"
        raise ShapeError(f"{name}: expected a non-empty array {want}, got shape {out.shape}")
    return out


def trajectory_paths(expert_2d: Any, student_2d: Any, title: str = "expert vs synthetic-trained trajectory (PCA)",
                     names: Sequence[str] = ("expert (real data)", "student (synthetic set)")) -> go.Figure:
    """The two paths in the plane of their two principal axes (equal scales), each point labelled with its epoch;
    the expert's path in the teacher's colour, the student's in the student's."""
    paths = [_array(expert_2d, "expert_2d", 2), _array(student_2d, "student_2d", 2)]
    fig = go.Figure()
    for path, name, color in zip(paths, names, (TEACHER, STUDENT), strict=True):
        epochs = np.arange(len(path))
        fig.add_trace(go.Scatter(x=path[:, 0], y=path[:, 1], mode="lines+markers+text", name=plotly_text(name),
                                 text=[str(e) for e in epochs], textposition="top center",
                                 customdata=epochs, line=dict(color=color), marker=dict(color=color),
                                 hovertemplate="epoch %{customdata}<br>PC 1 %{x:.4g}<br>PC 2 %{y:.4g}"
                                               "<extra>%{fullData.name}</extra>"))
    fig.update_xaxes(title="PC 1")
    fig.update_yaxes(title="PC 2", scaleanchor="x", scaleratio=1)
    return apply_theme(fig, title, height=420)


def matching_distance(iterations: Any, loss: Any, syn_lr: Any | None = None,
                      title: str = "normalised distance to the expert's target") -> go.Figure:
    """The matching loss ``||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2`` per distillation iteration
    (1, dotted: no closer than the start), and the learned synthetic learning rate on a second axis when given."""
    it, y = _array(iterations, "iterations", 1), _array(loss, "loss", 1)
    if len(it) != len(y):
        raise ShapeError(f"matching_distance: {len(it)} iterations but {len(y)} loss values")
    fig = go.Figure(go.Scatter(x=it, y=y, mode="lines", name="matching distance", line=dict(color=STUDENT)))
    fig.add_hline(y=1.0, line=dict(color=BASELINE, dash="dot", width=1))
    layout: dict[str, Any] = {}
    if syn_lr is not None:
        lr = _array(syn_lr, "syn_lr", 1)
        if len(lr) != len(it):
            raise ShapeError(f"matching_distance: {len(it)} iterations but {len(lr)} syn_lr values")
        fig.add_trace(go.Scatter(x=it, y=lr, mode="lines", name="synthetic learning rate", yaxis="y2",
                                 line=dict(color=TEACHER, dash="dash")))
        layout["yaxis2"] = dict(title="syn_lr", overlaying="y", side="right", showgrid=False)
        layout["margin"] = dict(r=80)
    fig.update_xaxes(title="iteration")
    fig.update_yaxes(title="normalised distance")
    return apply_theme(fig, title, height=340, **layout)


def distance_to_expert(distance: Any | Mapping[str, Any], title: str = "parameter distance to the expert, per epoch",
                       name: str = "student (synthetic set)") -> go.Figure:
    """The L2 distance between the synthetic-trained student and the expert at every expert epoch: one array, or
    a mapping of names (e.g. methods) to arrays, one line each."""
    series = distance if isinstance(distance, Mapping) else {name: distance}
    if not series:
        raise ShapeError("distance_to_expert: give at least one array of distances")
    colors = run_colors(list(series))
    fig = go.Figure()
    for key, values in series.items():
        d = _array(values, f"distance_to_expert[{key!r}]", 1)
        color = STUDENT if len(series) == 1 else colors[key]
        fig.add_trace(go.Scatter(x=np.arange(len(d)), y=d, mode="lines+markers", name=plotly_text(key),
                                 line=dict(color=color), marker=dict(color=color)))
    fig.update_xaxes(title="expert epoch")
    fig.update_yaxes(title="||theta_student - theta_expert||", rangemode="tozero")
    return apply_theme(fig, title, height=340)
