"""Diffusion distillation figures: sample quality against the number of function evaluations (NFE), sample grids by
number of steps, denoising trajectories (animated for 2-D data, strips for images), the student's samples at each
distillation snapshot (a slider scrubs them), the nearest training images of student samples (memorisation check),
the loss terms of a run, the quality table, the method card and the sampling speed.

Inputs are what ``kdlab.jobs.diffusion`` saves (``DiffusionArtifacts``: a quality DataFrame and dicts of numpy
arrays) and the run store's tidy metrics; nothing here computes more than a reshape. Images are ``(n, C, H, W)`` in
``[-1, 1]`` and drawn as ``go.Image`` tile mosaics (``-1`` black, ``1`` white; a NaN pixel is drawn red, so a broken
sample is seen, not hidden). Every string that comes from a run (method, data, samplers) goes through
``plotly_text``.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdlab.errors import ConfigError, ShapeError
from kdlab.viz.theme import (
    BASELINE,
    STUDENT,
    TEACHER,
    TITLE_PX,
    apply_theme,
    legend_below,
    plotly_text,
    sequence,
    with_alpha,
)

QUALITY_COLUMNS = ("who", "sampler", "steps", "nfe")
KNOWN_METRICS = ("swd", "mmd", "coverage", "fd", "accuracy", "precision", "recall")
HIGHER_IS_BETTER = frozenset({"coverage", "accuracy", "precision", "recall"})
METRIC_NAMES = {"swd": "sliced Wasserstein distance", "mmd": "MMD", "coverage": "mode coverage",
                "fd": "Fréchet distance", "accuracy": "class accuracy (judge)", "precision": "precision",
                "recall": "recall"}
WHO_ORDER = ("teacher", "student", "no_distill")
WHO_NAMES = {"teacher": "teacher", "student": "student", "no_distill": "no distillation"}
WHO_COLORS = {"teacher": TEACHER, "student": STUDENT, "no_distill": BASELINE}
REFERENCE = "#BBBBBB"
NAN_RGB = (220, 30, 30)  # a NaN pixel: red, never a plausible grey
GUTTER = 230  # the grey between tiles
MAX_POINTS = 1500  # points drawn per 2-D panel
KEY = re.compile(r"^(teacher|student|no_distill)_(\d+)$")


# ------------------------------------------------------------------------------------------ helpers

def _need(df: pd.DataFrame | None, cols: Sequence[str], what: str) -> None:
    if df is None:
        raise ConfigError(f"{what}: got None; expected a DataFrame with columns {list(cols)}")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ConfigError(f"{what}: missing column {missing[0]!r}; expected {list(cols)}")


def _array(d: Mapping[str, Any] | None, key: str, what: str) -> np.ndarray:
    if not d or key not in d or d[key] is None:
        known = sorted(d) if d else []
        raise ConfigError(f"{what}: no {key!r} array; it has {known}")
    return np.asarray(d[key])


def is_image_array(x: np.ndarray) -> bool:
    """Whether ``x`` holds images ``(..., C, H, W)`` rather than 2-D points ``(..., 2)``."""
    return x.ndim >= 4 or (x.ndim == 3 and x.shape[-1] != 2)


def steps_label(k: int) -> str:
    return f"{k} step" + ("" if k == 1 else "s")


def model_keys(samples: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """``(key, who, steps)`` of the sample arrays (``teacher_50``, ``student_1``...): teacher first, then the
    student by steps, then the undistilled baseline."""
    found = [(k, m.group(1), int(m.group(2))) for k in samples if (m := KEY.match(str(k)))]
    return sorted(found, key=lambda r: (WHO_ORDER.index(r[1]), r[2]))


def model_title(who: str, steps: int) -> str:
    return f"{WHO_NAMES.get(who, who)} · {steps_label(steps)}"


def to_pixels(images: np.ndarray) -> np.ndarray:
    """``(..., C, H, W)`` images in ``[-1, 1]`` as ``(..., H, W, 3)`` uint8 RGB: ``-1`` -> 0, ``1`` -> 255, clipped;
    one channel is repeated to grey; a NaN anywhere in a pixel makes it red."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim < 3 or x.shape[-3] not in (1, 3):
        raise ShapeError(f"images: expected (..., C, H, W) with C 1 or 3; got shape {tuple(x.shape)}")
    x = np.moveaxis(x, -3, -1)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    bad = np.isnan(x).any(axis=-1)
    out = np.rint((np.clip(np.nan_to_num(x, nan=-1.0), -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    out[bad] = NAN_RGB
    return out


def mosaic(images: np.ndarray, cols: int, pad: int = 1) -> np.ndarray:
    """``(n, C, H, W)`` images as one ``(rows*(H+pad)-pad, cols*(W+pad)-pad, 3)`` uint8 picture, row-major, with
    ``pad`` grey pixels between tiles (empty cells grey too)."""
    px = to_pixels(images)
    n, h, w = px.shape[0], px.shape[1], px.shape[2]
    cols = max(1, min(int(cols), n)) if n else 1
    rows = max(1, math.ceil(n / cols))
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, 3), GUTTER, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = px[i]
    return out


def _image_trace(picture: np.ndarray, name: str, **kw: Any) -> go.Image:
    return go.Image(z=picture, name=plotly_text(name), zmin=[0, 0, 0, 0], zmax=[255, 255, 255, 255],
                    hovertemplate=f"{plotly_text(name)}<br>pixel (%{{x}}, %{{y}})<br>value %{{z[0]}}<extra></extra>",
                    **kw)


def _bare_axes(fig: go.Figure) -> None:
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="", showline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="", showline=False)


def _label_colors(labels: np.ndarray | None, n: int, fallback: str) -> list[str]:
    if labels is None or len(labels) < n:
        return [fallback] * n
    lab = np.asarray(labels[:n]).astype(int)
    palette = sequence(max(int(lab.max(initial=-1)) + 1, 1))
    return [palette[v] if v >= 0 else fallback for v in lab]


def _extent(*arrays: np.ndarray, pad: float = 0.08) -> tuple[float, float]:
    """One axis range for all 2-D points given (robust to outliers and NaN), padded and square."""
    pts = np.concatenate([np.asarray(a, dtype=float).reshape(-1) for a in arrays if np.size(a)] or [np.zeros(1)])
    pts = pts[np.isfinite(pts)]
    if not len(pts):
        return -1.0, 1.0
    lo, hi = np.quantile(pts, [0.005, 0.995])
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0
    span = hi - lo
    return float(lo - pad * span), float(hi + pad * span)


def _points(x: np.ndarray, labels: np.ndarray | None, name: str, color: str, size: int = 4, **kw: Any) -> go.Scatter:
    x = np.asarray(x, dtype=float)[:MAX_POINTS]
    lab = None if labels is None else np.asarray(labels)[: len(x)]
    return go.Scatter(
        x=x[:, 0], y=x[:, 1], mode="markers", name=plotly_text(name),
        marker=dict(size=size, color=_label_colors(lab, len(x), color), opacity=0.8, line=dict(width=0)),
        customdata=lab if lab is not None else None,
        hovertemplate=(f"{plotly_text(name)}<br>(%{{x:.3f}}, %{{y:.3f}})"
                       + ("<br>label %{customdata}" if lab is not None else "") + "<extra></extra>"), **kw)


def _reference(x: np.ndarray | None, **kw: Any) -> go.Scatter:
    x = np.zeros((0, 2)) if x is None else np.asarray(x, dtype=float)[:MAX_POINTS]
    return go.Scatter(x=x[:, 0], y=x[:, 1], mode="markers", name="held-out data", hoverinfo="skip",
                        marker=dict(size=3, color=with_alpha(REFERENCE, 0.45), line=dict(width=0)), **kw)


def _slider(names: Sequence[str], labels: Sequence[str], prefix: str, redraw: bool, top: int = 36) -> dict:
    return dict(active=0, currentvalue=dict(prefix=prefix, font=dict(size=13), xanchor="right"), pad=dict(t=top, b=4),
                x=0.14, len=0.86, steps=[dict(method="animate", label=lab,
                                      args=[[nm], dict(mode="immediate", frame=dict(duration=0, redraw=redraw),
                                                       transition=dict(duration=0))])
                                 for nm, lab in zip(names, labels, strict=True)])


def _play(redraw: bool, duration: int, top: int = 42) -> dict:
    return dict(type="buttons", direction="left", x=0.0, xanchor="left", y=0, yanchor="top", pad=dict(t=top, r=8),
                showactive=False,
                buttons=[dict(label="▶ play", method="animate",
                              args=[None, dict(frame=dict(duration=duration, redraw=redraw), fromcurrent=True,
                                               transition=dict(duration=0), mode="immediate")]),
                         dict(label="❚❚", method="animate",
                              args=[[None], dict(frame=dict(duration=0, redraw=False), mode="immediate",
                                                 transition=dict(duration=0))])])


def t_label(t: float) -> str:
    """A timestep as the figures say it: ``t=999``, or ``x₀`` for clean data (``t = -1``)."""
    return "x₀" if t is None or not np.isfinite(t) or t < 0 else f"t={int(round(float(t)))}"


# ------------------------------------------------------------------------------------------ quality

def metrics_of(quality: pd.DataFrame) -> list[str]:
    """The metric columns of a quality table: the known ones first, then any other numeric column."""
    fixed = {"who", "sampler", "steps", "nfe", "s_per_sample"}
    known = [m for m in KNOWN_METRICS if m in quality.columns]
    other = [c for c in quality.columns if c not in fixed and c not in known
             and pd.api.types.is_numeric_dtype(quality[c])]
    return known + other


def default_metric(quality: pd.DataFrame) -> str:
    """``swd`` (2-D) or ``fd`` (images) when present, else the first metric column."""
    ms = metrics_of(quality)
    if not ms:
        raise ConfigError(f"quality: no metric column; expected one of {list(KNOWN_METRICS)}")
    return next((m for m in ("swd", "fd") if m in ms), ms[0])


def metric_axis(metric: str) -> str:
    better = "higher" if metric in HIGHER_IS_BETTER else "lower"
    return f"{plotly_text(metric)} ({better} is better)"


def _curves(quality: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """``(name, who, rows)`` per curve: one per teacher sampler, one per student (sampler named when several)."""
    q = quality.copy()
    q["who"] = q["who"].astype(str)
    q["sampler"] = q["sampler"].fillna("").astype(str)
    whos = sorted(q["who"].unique(), key=lambda w: (WHO_ORDER.index(w) if w in WHO_ORDER else len(WHO_ORDER), w))
    out = []
    for who in whos:
        d = q[q["who"] == who]
        samplers = list(dict.fromkeys(d["sampler"]))
        for s in samplers:
            rows = d[d["sampler"] == s].sort_values("nfe")
            name = WHO_NAMES.get(who, who)
            if who == "teacher" or len(samplers) > 1:
                name += f" · {s}" if s else ""
            out.append((name, who, rows))
    return out


def quality_vs_nfe(quality: pd.DataFrame, metric: str | None = None,
                   title: str = "Sample quality against function evaluations per sample") -> go.Figure:
    """One curve per model (the teacher per sampler, the student, the undistilled baseline): x the number of
    function evaluations per sample (log), y ``metric`` (default ``swd`` or ``fd``); hover adds steps and seconds
    per sample. A dropdown switches every curve to another metric of the table."""
    _need(quality, QUALITY_COLUMNS, "quality")
    metrics = metrics_of(quality)
    metric = metric or default_metric(quality)
    if metric not in metrics:
        raise ConfigError.at("metric", f"{metric!r} is not a metric of this run", metrics)
    curves = _curves(quality)
    teacher_dashes = iter(["solid", "dot", "dash", "dashdot", "longdash"] * 3)
    fig = go.Figure()
    for name, who, d in curves:
        sps = pd.to_numeric(d.get("s_per_sample", pd.Series(np.nan, index=d.index)), errors="coerce")
        custom = np.column_stack([d["steps"].to_numpy(dtype=float), sps.to_numpy(dtype=float)])
        dash = next(teacher_dashes) if who == "teacher" else "solid"
        color = WHO_COLORS.get(who)
        fig.add_trace(go.Scatter(
            x=d["nfe"].to_numpy(dtype=float), y=pd.to_numeric(d[metric], errors="coerce").to_numpy(dtype=float),
            name=plotly_text(name), mode="lines+markers", customdata=custom,
            line=dict(color=color, dash=dash, width=2.5 if who == "student" else 2), marker=dict(size=8),
            hovertemplate=(f"<b>{plotly_text(name)}</b><br>%{{customdata[0]:.0f}} steps · %{{x:.0f}} NFE<br>"
                           "%{y:.4g}<br>%{customdata[1]:.3g} s per sample<extra></extra>")))
    buttons = [dict(label=plotly_text(m), method="update",
                    args=[{"y": [pd.to_numeric(d[m], errors="coerce").to_numpy(dtype=float).tolist()
                                 for _n, _w, d in curves]},
                          {"yaxis.title.text": metric_axis(m)}]) for m in metrics]
    nfes = sorted({float(v) for v in pd.to_numeric(quality["nfe"], errors="coerce") if np.isfinite(v) and v > 0})
    fig.update_xaxes(type="log", title_text="function evaluations per sample (NFE, log)",
                     tickvals=nfes, ticktext=[f"{v:g}" for v in nfes])  # ticks at the NFEs measured
    fig.update_yaxes(title_text=metric_axis(metric))
    menus = [dict(buttons=buttons, active=metrics.index(metric), x=1.0, xanchor="right", y=1.02, yanchor="bottom",
                  direction="down", showactive=True)] if len(metrics) > 1 else []
    return apply_theme(fig, title, height=440, updatemenus=menus, **legend_below(440))


def quality_table(quality: pd.DataFrame, title: str = "Sample quality of the teacher and the student") -> go.Figure:
    """The quality table: one row per (model, sampler, steps), its NFE, every metric and seconds per sample."""
    _need(quality, QUALITY_COLUMNS, "quality")
    metrics = metrics_of(quality)
    q = quality.copy()
    q["_o"] = q["who"].astype(str).map(lambda w: WHO_ORDER.index(w) if w in WHO_ORDER else len(WHO_ORDER))
    q = q.sort_values(["_o", "sampler", "steps"], kind="stable")
    cols = ["model", "sampler", "steps", "NFE", *metrics, "s / sample"]

    def num(v: Any, fmt: str = ".4g") -> str:
        v = pd.to_numeric(v, errors="coerce")
        return "–" if v is None or not np.isfinite(v) else format(float(v), fmt)

    values = [[plotly_text(WHO_NAMES.get(str(w), str(w))) for w in q["who"]],
              [plotly_text("" if pd.isna(s) else s) for s in q["sampler"]],
              [num(s, ".0f") for s in q["steps"]], [num(s, ".0f") for s in q["nfe"]],
              *[[num(v) for v in q[m]] for m in metrics],
              [num(v, ".3g") for v in q.get("s_per_sample", pd.Series(np.nan, index=q.index))]]
    fill = [[with_alpha(WHO_COLORS.get(str(w), BASELINE), 0.10) for w in q["who"]]]
    widths = [1.3, 1.0, 0.7, 0.7, *[1.1] * len(metrics), 1.1]
    fig = go.Figure(go.Table(
        columnwidth=widths, header=dict(values=[f"<b>{plotly_text(c)}</b>" for c in cols], align="left",
                                        fill_color="#F2F2F2", font=dict(size=11)),
        cells=dict(values=values, align="left", fill_color=fill * len(cols), height=24, font=dict(size=11))))
    return apply_theme(fig, title, height=int(TITLE_PX + 70 + 25 * len(q)), margin=dict(t=TITLE_PX + 10, b=10,
                                                                                         l=10, r=10))


# ------------------------------------------------------------------------------------------ sample grids

def sample_grid(samples: Mapping[str, Any], keys: Sequence[str] | None = None, per_row: int = 16, rows: int = 2,
                title: str = "Samples by number of sampling steps") -> go.Figure:
    """The models' samples side by side, one panel per ``teacher_<k>`` / ``student_<k>`` array (``keys``: which,
    default all). 2-D: a scatter per panel over the faint held-out ``reference``, coloured by ``labels``. Images:
    one mosaic per model (``rows`` x ``per_row`` samples), the teacher's on top, the student's below."""
    found = model_keys(samples)
    if keys is not None:
        found = [r for r in found if r[0] in set(keys)]
    if not found:
        raise ConfigError(f"samples: no teacher_<k>/student_<k> array; it has {sorted(samples)}")
    labels = samples.get("labels")
    labels = None if labels is None else np.asarray(labels)
    first = np.asarray(samples[found[0][0]])
    if is_image_array(first):
        return _image_grid(samples, found, labels, per_row, rows, title)
    return _point_grid(samples, found, labels, title)


def _point_grid(samples: Mapping[str, Any], found: list[tuple[str, str, int]], labels: np.ndarray | None,
                title: str) -> go.Figure:
    n = len(found)
    cols = min(n, 4)
    nrows = math.ceil(n / cols)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=[plotly_text(model_title(w, k)) for _, w, k in found],
                        horizontal_spacing=0.04, vertical_spacing=0.10)
    ref = samples.get("reference")
    lo, hi = _extent(*(np.asarray(samples[key]) for key, _, _ in found), *([] if ref is None else [ref]))
    for i, (key, who, k) in enumerate(found):
        r, c = divmod(i, cols)
        fig.add_trace(_reference(ref, showlegend=i == 0, legendgroup="ref"), row=r + 1, col=c + 1)
        fig.add_trace(_points(np.asarray(samples[key]), labels, model_title(who, k), WHO_COLORS[who],
                              showlegend=False), row=r + 1, col=c + 1)
    fig.update_xaxes(range=[lo, hi], showticklabels=False, zeroline=False, constrain="domain")
    fig.update_yaxes(range=[lo, hi], showticklabels=False, zeroline=False, constrain="domain")
    fig.update_annotations(font_size=12)  # panel titles: four side by side fit a half-page figure
    for i in range(n):  # square panels: equal data units on both axes
        fig.layout[f"yaxis{'' if i == 0 else i + 1}"].update(scaleanchor=f"x{'' if i == 0 else i + 1}", scaleratio=1)
    height = int(TITLE_PX + 70 + 300 * nrows)
    return apply_theme(fig, title, height=height, margin=dict(t=TITLE_PX + 40, b=40),  # no tick labels under the panels
                       legend=dict(orientation="h", yref="paper", y=-0.03, yanchor="top", x=0.0, xanchor="left"))


def _image_grid(samples: Mapping[str, Any], found: list[tuple[str, str, int]], labels: np.ndarray | None,
                per_row: int, rows: int, title: str) -> go.Figure:
    n = len(found)
    fig = make_subplots(rows=n, cols=1, subplot_titles=[plotly_text(model_title(w, k)) for _, w, k in found],
                        vertical_spacing=min(0.08, 0.5 / n))
    shown = per_row * rows
    for i, (key, who, k) in enumerate(found):
        x = np.asarray(samples[key])[:shown]
        fig.add_trace(_image_trace(mosaic(x, per_row), model_title(who, k)), row=i + 1, col=1)
    _bare_axes(fig)
    h, w = np.asarray(samples[found[0][0]]).shape[-2:]
    aspect = (rows * (h + 1)) / max(per_row * (w + 1), 1)
    height = int(TITLE_PX + 40 + n * (40 + 900 * aspect))
    return apply_theme(fig, title, height=min(height, 2400), margin=dict(t=TITLE_PX + 20, b=10, l=10, r=10),
                       showlegend=False)


# ------------------------------------------------------------------------------------------ trajectories

def _frame_index(i: int, length: int) -> int:
    return min(i, length - 1)


def trajectory_figure(trajectories: Mapping[str, Any], labels: np.ndarray | None = None, reference: Any = None,
                      max_points: int = 300, rows: int = 4, max_columns: int = 11,
                      title: str = "Denoising trajectories: from noise to samples") -> go.Figure:
    """How sampling moves noise to samples, the teacher beside the student. 2-D: an animation (play button and
    slider; one frame per sampling step of the longer trajectory, the shorter one holding its final samples), points
    coloured by ``labels`` (default: the trajectories' own ``labels``). Images: a strip per model, rows = samples,
    columns = steps (at most ``max_columns``, evenly spaced)."""
    teacher = _array(trajectories, "teacher", "trajectories")
    labels = labels if labels is not None else trajectories.get("labels")
    student = _array(trajectories, "student", "trajectories")
    tt = np.asarray(trajectories.get("teacher_t", np.full(len(teacher), np.nan)), dtype=float)
    st = np.asarray(trajectories.get("student_t", np.full(len(student), np.nan)), dtype=float)
    if is_image_array(teacher[0] if teacher.ndim > 1 else teacher):
        return _trajectory_strips(teacher, student, tt, st, rows, max_columns, title)
    return _trajectory_animation(teacher, student, tt, st, labels, reference, max_points, title)


def _trajectory_animation(teacher: np.ndarray, student: np.ndarray, tt: np.ndarray, st: np.ndarray,
                          labels: np.ndarray | None, reference: Any, max_points: int, title: str) -> go.Figure:
    teacher, student = teacher[:, :max_points].astype(float), student[:, :max_points].astype(float)
    nt, ns = len(teacher), len(student)
    frames_n = max(nt, ns)
    names = [f"teacher · {steps_label(nt - 1)}", f"student · {steps_label(ns - 1)}"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=[plotly_text(n) for n in names], horizontal_spacing=0.05)
    lo, hi = _extent(teacher, student, *([] if reference is None else [reference]), pad=0.04)
    lab = None if labels is None else np.asarray(labels)

    def pair(i: int) -> list[go.Scatter]:
        a, b = teacher[_frame_index(i, nt)], student[_frame_index(i, ns)]
        return [go.Scatter(x=a[:, 0], y=a[:, 1], mode="markers",
                           marker=dict(size=5, color=_label_colors(lab, len(a), TEACHER), line=dict(width=0))),
                go.Scatter(x=b[:, 0], y=b[:, 1], mode="markers",
                           marker=dict(size=5, color=_label_colors(lab, len(b), STUDENT), line=dict(width=0)))]

    def stamp(i: int) -> str:
        return (f"{plotly_text(title)}<br><sup>step {i}: teacher {t_label(tt[_frame_index(i, nt)])} · student "
                f"{t_label(st[_frame_index(i, ns)])}</sup>")

    ref = None if reference is None else np.asarray(reference, dtype=float)
    fig.add_trace(_reference(ref, showlegend=False), row=1, col=1)
    fig.add_trace(_reference(ref, showlegend=False), row=1, col=2)
    first = pair(0)
    for c, (tr, nm) in enumerate(zip(first, names, strict=True), start=1):
        tr.update(name=plotly_text(nm), showlegend=False,
                  hovertemplate=f"{plotly_text(nm)}<br>(%{{x:.3f}}, %{{y:.3f}})<extra></extra>")
        fig.add_trace(tr, row=1, col=c)
    fig.frames = [go.Frame(name=str(i), data=pair(i), traces=[2, 3], layout=dict(title=dict(text=stamp(i))))
                  for i in range(frames_n)]
    fig.update_xaxes(range=[lo, hi], showticklabels=False, zeroline=False, constrain="domain")
    fig.update_yaxes(range=[lo, hi], showticklabels=False, zeroline=False, constrain="domain")
    fig.update_layout(yaxis=dict(scaleanchor="x", scaleratio=1), yaxis2=dict(scaleanchor="x2", scaleratio=1))
    names_ = [str(i) for i in range(frames_n)]
    return apply_theme(fig, stamp(0), height=560, margin=dict(t=TITLE_PX + 50, b=110, l=20, r=20),
                       sliders=[_slider(names_, names_, "sampling step ", redraw=True)],
                       updatemenus=[_play(redraw=True, duration=max(60, 2000 // max(frames_n, 1)))])


def _columns(length: int, most: int) -> list[int]:
    if length <= most:
        return list(range(length))
    return sorted({int(round(v)) for v in np.linspace(0, length - 1, most)})


def _trajectory_strips(teacher: np.ndarray, student: np.ndarray, tt: np.ndarray, st: np.ndarray, rows: int,
                       max_columns: int, title: str) -> go.Figure:
    cols_t, cols_s = _columns(len(teacher), max_columns), _columns(len(student), max_columns)
    rows = max(1, min(rows, teacher.shape[1], student.shape[1]))
    fig = make_subplots(rows=1, cols=2, column_widths=[len(cols_t), len(cols_s)], horizontal_spacing=0.03,
                        subplot_titles=[plotly_text(f"teacher · {steps_label(len(teacher) - 1)}"),
                                        plotly_text(f"student · {steps_label(len(student) - 1)}")])
    h, w = teacher.shape[-2:]
    for c, (traj, cols, ts, who) in enumerate(((teacher, cols_t, tt, "teacher"), (student, cols_s, st, "student")),
                                              start=1):
        # rows = samples, columns = steps: tile (r, j) is sample r at step cols[j]
        tiles = np.stack([traj[j, r] for r in range(rows) for j in cols])
        fig.add_trace(_image_trace(mosaic(tiles, len(cols)), who), row=1, col=c)
        fig.update_xaxes(tickvals=[j * (w + 1) + (w - 1) / 2 for j in range(len(cols))],
                         ticktext=[t_label(ts[j]) if j < len(ts) else "" for j in cols], showgrid=False,
                         zeroline=False, tickangle=0, tickfont=dict(size=10), row=1, col=c)
        fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, row=1, col=c)
    total = len(cols_t) + len(cols_s)
    height = int(TITLE_PX + 100 + 1300 * rows * (h + 1) / max(total * (w + 1), 1))
    return apply_theme(fig, title, height=max(260, min(height, 1200)), margin=dict(t=TITLE_PX + 30, b=40, l=10, r=10),
                       showlegend=False)


# ------------------------------------------------------------------------------------------ snapshots

def snapshot_figure(snapshots: Mapping[str, Any], reference: Any = None, labels: np.ndarray | None = None,
                    metric: str = "metric", per_row: int = 8, rows: int = 4, max_points: int = 600,
                    title: str = "The student during distillation (fixed noise)") -> go.Figure:
    """The student's samples from fixed noise at each distillation snapshot (left; a slider scrubs them, play
    animates) and the quality ``metric`` per snapshot (right; the current snapshot marked). One frame per snapshot;
    points are coloured by ``labels`` (default: the snapshots' own ``labels``)."""
    steps = _array(snapshots, "step", "snapshots").astype(float).reshape(-1)
    samples = _array(snapshots, "samples", "snapshots")
    values = np.asarray(snapshots.get("metric", np.full(len(steps), np.nan)), dtype=float).reshape(-1)
    if len(samples) != len(steps) or len(values) != len(steps):
        raise ShapeError(f"snapshots: {len(steps)} steps but {len(samples)} sample sets and {len(values)} metric "
                         "values; expected one of each per snapshot")
    if not len(steps):
        raise ConfigError("snapshots: none saved (the run's snapshot interval is longer than the run)")
    image = is_image_array(samples[0] if samples.ndim > 1 else samples)
    labels = labels if labels is not None else snapshots.get("labels")
    fig = make_subplots(rows=1, cols=2, column_widths=[0.58, 0.42], horizontal_spacing=0.08,
                        subplot_titles=["student samples", plotly_text(metric) + " per snapshot"])
    lab = None if labels is None else np.asarray(labels)
    if image:
        shown = per_row * rows

        def sample_trace(i: int) -> Any:
            return _image_trace(mosaic(np.asarray(samples[i])[:shown], per_row), f"step {int(steps[i])}")

        fig.add_trace(go.Scatter(x=[], y=[], showlegend=False, hoverinfo="skip"), row=1, col=1)  # keeps indices
    else:
        pts = np.asarray(samples, dtype=float)[:, :max_points]
        lo, hi = _extent(pts, *([] if reference is None else [reference]), pad=0.04)

        def sample_trace(i: int) -> Any:
            a = pts[i]
            return go.Scatter(x=a[:, 0], y=a[:, 1], mode="markers", name=f"step {int(steps[i])}", showlegend=False,
                              marker=dict(size=4, color=_label_colors(lab, len(a), STUDENT), line=dict(width=0)),
                              hovertemplate="(%{x:.3f}, %{y:.3f})<extra></extra>")

        fig.add_trace(_reference(None if reference is None else np.asarray(reference, dtype=float),
                                 showlegend=False), row=1, col=1)
    fig.add_trace(sample_trace(0), row=1, col=1)
    fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers", name=plotly_text(metric), showlegend=False,
                             line=dict(color=STUDENT), marker=dict(size=6),
                             hovertemplate=f"step %{{x:.0f}}<br>{plotly_text(metric)} %{{y:.4g}}<extra></extra>"),
                  row=1, col=2)

    def marker(i: int) -> go.Scatter:
        return go.Scatter(x=[steps[i]], y=[values[i]], mode="markers", showlegend=False, hoverinfo="skip",
                          marker=dict(size=14, color="rgba(0,0,0,0)", line=dict(color="#222222", width=2)))

    fig.add_trace(marker(0), row=1, col=2)
    names = [str(i) for i in range(len(steps))]
    labels_ = [f"{int(s)}" for s in steps]
    fig.frames = [go.Frame(name=names[i], data=[sample_trace(i), marker(i)], traces=[1, 3])
                  for i in range(len(steps))]
    if image:
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, row=1, col=1)
        fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, row=1, col=1)
    else:
        fig.update_xaxes(range=[lo, hi], showticklabels=False, zeroline=False, constrain="domain", row=1, col=1)
        fig.update_yaxes(range=[lo, hi], showticklabels=False, zeroline=False, scaleanchor="x", scaleratio=1,
                         constrain="domain", row=1, col=1)
    fig.update_xaxes(title_text="distillation step", row=1, col=2)
    fig.update_yaxes(title_text=metric_axis(metric), row=1, col=2)
    return apply_theme(fig, title, height=550, margin=dict(t=TITLE_PX + 40, b=150, l=20, r=20),
                       sliders=[_slider(names, labels_, "distillation step ", redraw=True, top=66)],
                       updatemenus=[_play(redraw=True, duration=400, top=72)])


# ------------------------------------------------------------------------------------------ memorisation

def neighbours_figure(neighbours: Mapping[str, Any], most: int = 8,
                      title: str = "Student samples and their nearest training images (pixel L2)") -> go.Figure:
    """Memorisation check: each row a student sample (left) and its ``k`` nearest training images in pixel L2,
    the distance under each one. Copies of training images show up as distances near 0."""
    samples = _array(neighbours, "samples", "neighbours")[:most]
    near = _array(neighbours, "neighbours", "neighbours")[:most]
    dist = np.asarray(neighbours.get("distances", np.full(near.shape[:2], np.nan)), dtype=float)[:most]
    if near.ndim != samples.ndim + 1 or len(near) != len(samples):
        raise ShapeError(f"neighbours: samples {tuple(samples.shape)} and neighbours {tuple(near.shape)} do not "
                         "match; expected (m, C, H, W) and (m, k, C, H, W)")
    m, k = near.shape[:2]
    h, w = samples.shape[-2:]
    gap = max(2, w // 3)  # a wider gutter between the sample and its neighbours
    text_px = max(3, h // 3)  # room under each row for the distances
    tile_h, tile_w = h + text_px, w + 1
    width = (k + 1) * tile_w + gap
    px_s, px_n = to_pixels(samples), to_pixels(near)
    pic = np.full((m * tile_h, width, 3), 255, dtype=np.uint8)
    xs = [0] + [gap + (j + 1) * tile_w for j in range(k)]
    for r in range(m):
        y0 = r * tile_h
        pic[y0:y0 + h, xs[0]:xs[0] + w] = px_s[r]
        for j in range(k):
            pic[y0:y0 + h, xs[j + 1]:xs[j + 1] + w] = px_n[r, j]
    fig = go.Figure(_image_trace(pic, "samples | nearest training images"))
    for r in range(m):
        for j in range(k):
            d = dist[r, j] if r < len(dist) and j < dist.shape[1] else np.nan
            fig.add_annotation(x=xs[j + 1] + (w - 1) / 2, y=r * tile_h + h + text_px / 2 - 0.5, showarrow=False,
                               text="–" if not np.isfinite(d) else f"{d:.2f}", font=dict(size=10, color="#333333"))
    fig.update_xaxes(tickvals=[x + (w - 1) / 2 for x in xs],
                     ticktext=["sample"] + [f"#{j + 1}" for j in range(k)], side="top", showgrid=False,
                     zeroline=False, showline=False, ticks="")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, showline=False, ticks="")
    height = int(TITLE_PX + 60 + 420 * (m * tile_h) / max(width, 1))
    return apply_theme(fig, title, height=max(300, min(height, 1400)), margin=dict(t=TITLE_PX + 40, b=10, l=10,
                                                                                   r=10), showlegend=False)


# ------------------------------------------------------------------------------------------ run curves, card, speed

def diffusion_curves(metrics: pd.DataFrame, title: str = "Distillation: loss terms and quality at snapshots"
                     ) -> go.Figure:
    """Per-step loss terms (``loss/*``) and the quality at snapshots (``eval/*``) from the run store's tidy
    metrics (``store.metrics(run_id)``) of a ``diffusion`` run."""
    _need(metrics, ("key", "value", "step"), "metrics")
    m = metrics[pd.to_numeric(metrics["value"], errors="coerce").notna()]
    keys = list(dict.fromkeys(m["key"].astype(str)))
    panels = [("loss terms", [k for k in keys if k.startswith("loss/")]),
              ("quality at snapshots", [k for k in keys if k.startswith("eval/")])]
    panels = [(n, ks) for n, ks in panels if ks]
    if not panels:
        from kdlab.viz.curves import empty_figure

        return empty_figure(title, "no metrics yet: the curves appear with the run's first steps")
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[n for n, _ in panels], horizontal_spacing=0.08)
    every = [k for _, ks in panels for k in ks]
    colors = dict(zip(every, sequence(len(every)), strict=True))
    for c, (_name, ks) in enumerate(panels, start=1):
        for k in ks:
            d = m[m["key"].astype(str) == k].sort_values("step")
            fig.add_trace(go.Scatter(x=d["step"], y=d["value"], name=plotly_text(k),
                                     mode="lines+markers" if len(d) < 30 else "lines", line=dict(color=colors[k]),
                                     hovertemplate=f"{plotly_text(k)}<br>step %{{x}}<br>%{{y:.4g}}<extra></extra>"),
                          row=1, col=c)
        fig.update_xaxes(title_text="distillation step", row=1, col=c)
    return apply_theme(fig, title, height=400, **legend_below(400, top=TITLE_PX + 50))


def method_card(summary: Mapping[str, Any], title: str = "Method") -> go.Figure:
    """What was distilled how: method and its parameters, the paper, what kdlab simplifies, data, teacher, guidance,
    seed, as a two-column table (every value escaped)."""
    s = dict(summary or {})
    teacher = s.get("teacher") or {}
    if isinstance(teacher, Mapping):
        teacher = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in teacher.items())
    hp = s.get("method_params") or {}
    hp_text = ", ".join(f"{k}={v}" for k, v in hp.items()) if isinstance(hp, Mapping) else str(hp)
    rows = [("method", f"{s.get('method', '?')}" + (f" ({hp_text})" if hp_text else "")),
            ("paper", s.get("cite", "")), ("kdlab's simplification", s.get("simplification", "")),
            ("data", s.get("data", "")), ("teacher", teacher),
            ("student parameters", f"{s['student_params']:,}" if isinstance(s.get("student_params"), int)
             else s.get("student_params", "")),
            ("guidance · seed", f"{s.get('guidance', '')} · {s.get('seed', '')}"),
            ("distillation time", f"{s['distill_seconds']:.1f} s" if isinstance(s.get("distill_seconds"),
                                                                                  (int, float)) else "")]
    rows = [(k, str(v)) for k, v in rows if v not in ("", None)]

    def wrap(text: str, width: int = 90) -> str:
        words, lines, line = plotly_text(text).split(" "), [], ""
        for wd in words:
            if line and len(line) + len(wd) + 1 > width:
                lines.append(line)
                line = wd
            else:
                line = f"{line} {wd}" if line else wd
        return "<br>".join([*lines, line])

    cells = [[f"<b>{plotly_text(k)}</b>" for k, _ in rows], [wrap(v) for _, v in rows]]
    lines = sum(c.count("<br>") + 1 for c in cells[1])
    fig = go.Figure(go.Table(columnwidth=[1.7, 5], header=dict(values=["", ""], height=0, fill_color="white",
                                                             line=dict(width=0)),
                             cells=dict(values=cells, align="left", fill_color="white", height=22,
                                        line=dict(color="#EEEEEE"))))
    return apply_theme(fig, title, height=int(TITLE_PX + 50 + 20 * lines + 12 * len(rows)),
                       margin=dict(t=TITLE_PX + 10, b=10, l=10, r=10))


def speedup(samples_per_second: Mapping[str, Any]) -> tuple[float, int, int] | None:
    """``(ratio, student steps, teacher steps)``: how many times faster the student samples at its fewest steps than
    the teacher at its most (None when either is missing or not a positive number)."""
    rates: dict[str, dict[int, float]] = {"student": {}, "teacher": {}}
    for k, v in (samples_per_second or {}).items():
        m = KEY.match(str(k))
        if m and m.group(1) in rates and isinstance(v, (int, float)) and np.isfinite(v) and v > 0:
            rates[m.group(1)][int(m.group(2))] = float(v)
    if not rates["student"] or not rates["teacher"]:
        return None
    s, t = min(rates["student"]), max(rates["teacher"])
    return rates["student"][s] / rates["teacher"][t], s, t


def speed_bars(summary: Mapping[str, Any], title: str = "Sampling speed") -> go.Figure:
    """Samples per second of each sampler timed (``summary["samples_per_second"]``: ``student_1``, ``teacher_50``
    ...), the student's in its colour; the title says how many times faster the fastest student is."""
    sps = dict((summary or {}).get("samples_per_second") or {})
    if not sps:
        raise ConfigError("summary: no 'samples_per_second' (the run did not time its samplers)")
    keys = sorted(sps, key=lambda k: (WHO_ORDER.index(m.group(1)), int(m.group(2)))
                  if (m := KEY.match(str(k))) else (len(WHO_ORDER), 0))
    names = [model_title(m.group(1), int(m.group(2))) if (m := KEY.match(str(k))) else str(k) for k in keys]
    vals = [float(sps[k]) if sps[k] is not None else math.nan for k in keys]
    colors = [WHO_COLORS.get(m.group(1), BASELINE) if (m := KEY.match(str(k))) else BASELINE for k in keys]
    fig = go.Figure(go.Bar(x=vals, y=[plotly_text(n) for n in names], orientation="h", marker=dict(color=colors),
                           text=[f"{v:,.0f}/s" if np.isfinite(v) else "–" for v in vals], textposition="auto",
                           hovertemplate="%{y}<br>%{x:,.1f} samples per second<extra></extra>"))
    ratio = speedup(sps)
    note = "" if ratio is None else (f": the student at {steps_label(ratio[1])} samples {ratio[0]:,.0f}× faster than "
                                     f"the teacher at {steps_label(ratio[2])}")
    fig.update_xaxes(title_text="samples per second (higher is better)", rangemode="tozero")
    fig.update_yaxes(autorange="reversed")
    return apply_theme(fig, plotly_text(title) + note, height=int(TITLE_PX + 110 + 40 * len(keys)),
                       showlegend=False, margin=dict(t=TITLE_PX + 20, b=60, l=150, r=20))


__all__ = ["default_metric", "diffusion_curves", "is_image_array", "method_card", "metrics_of", "model_keys",
           "mosaic", "neighbours_figure", "quality_table", "quality_vs_nfe", "sample_grid", "snapshot_figure",
           "speed_bars", "speedup", "t_label", "to_pixels", "trajectory_figure"]
