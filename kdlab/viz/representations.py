"""Figures of representation analysis: CKA heatmap and CKA over epochs, embedding scatter pair, agreement
and calibration panel, training-free student ranking. Pure: results in, ``go.Figure`` out."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdlab.errors import ConfigError
from kdlab.viz.theme import BASELINE, LEGEND_RIGHT, STUDENT, TEACHER, apply_theme, plotly_text, sequence


def cka_heatmap(df: pd.DataFrame, title: str = "CKA", name_a: str = "teacher", name_b: str = "student",
                diagonal: bool = True) -> go.Figure:
    """Heatmap of a ``cka_matrix`` (rows: ``name_a``'s layers, columns: ``name_b``'s), values written in the
    cells, colour scale fixed to [0, 1]; with ``diagonal``, matched stages (aligned at the deepest layer) are
    outlined and their mean is in the title."""
    if not isinstance(df, pd.DataFrame) or df.empty:
        raise ConfigError("df: expected a non-empty DataFrame from cka_matrix")
    z = df.to_numpy(dtype=float)
    rows = [plotly_text(r) for r in df.index]
    cols = [plotly_text(c) for c in df.columns]
    fig = go.Figure(go.Heatmap(z=z, x=cols, y=rows, zmin=0, zmax=1, colorbar=dict(title="CKA"),
                               text=np.vectorize(lambda v: "" if np.isnan(v) else f"{v:.2f}")(z),
                               texttemplate="%{text}", hovertemplate=f"{plotly_text(name_a)} %{{y}}<br>"
                               f"{plotly_text(name_b)} %{{x}}<br>CKA %{{z:.4f}}<extra></extra>"))
    full = str(title)
    if diagonal:
        n = min(z.shape)
        pairs = [(z.shape[0] - n + i, z.shape[1] - n + i) for i in range(n)]
        for r, c in pairs:
            fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5,
                          line=dict(color=STUDENT, width=3))
        full += f" · mean matched-stage CKA {np.nanmean([z[r, c] for r, c in pairs]):.3f}"
    fig.update_xaxes(title_text=f"{plotly_text(name_b)} layer", type="category")
    fig.update_yaxes(title_text=f"{plotly_text(name_a)} layer", type="category", autorange="reversed")
    return apply_theme(fig, full, height=max(320, 70 * len(rows) + 160))


def cka_over_epochs(frame: pd.DataFrame, pairs: Sequence[tuple[str, str]] | None = None,
                    title: str = "Teacher-student CKA over training") -> go.Figure:
    """Lines of CKA against epoch for chosen (teacher layer, student layer) ``pairs`` (default: matched stages),
    from ``CKARecorder.frame()`` (columns epoch, teacher_layer, student_layer, cka)."""
    need = {"epoch", "teacher_layer", "student_layer", "cka"}
    if not need <= set(frame.columns):
        raise ConfigError(f"frame: needs columns {sorted(need)}, got {list(frame.columns)}")
    if pairs is None:
        t = list(dict.fromkeys(frame["teacher_layer"]))
        s = list(dict.fromkeys(frame["student_layer"]))
        n = min(len(t), len(s))
        pairs = list(zip(t[-n:], s[-n:], strict=True))
    fig = go.Figure()
    for (a, b), color in zip(pairs, sequence(len(pairs)), strict=True):
        d = frame[(frame["teacher_layer"] == a) & (frame["student_layer"] == b)].sort_values("epoch")
        if d.empty:
            raise ConfigError(f"pairs: ({a!r}, {b!r}) was not recorded")
        fig.add_trace(go.Scatter(x=d["epoch"], y=d["cka"], mode="lines+markers", line=dict(color=color),
                                 name=plotly_text(f"{a} ~ {b}")))
    fig.update_xaxes(title_text="epoch (0 = before training)")
    fig.update_yaxes(title_text="CKA", range=[0, 1.02])
    return apply_theme(fig, title, height=420)


def embedding_scatter(teacher: np.ndarray, student: np.ndarray, labels: np.ndarray, color_by: str = "class",
                      agree: np.ndarray | None = None, class_names: Sequence[str] | None = None,
                      title: str = "Embeddings", method: str = "pca") -> go.Figure:
    """Teacher and student 2-D embeddings of the same samples side by side, coloured by class or by whether
    teacher and student predict the same class (``agree``)."""
    if color_by not in ("class", "agreement"):
        raise ConfigError(f"color_by: {color_by!r} is not one of ['class', 'agreement']")
    if color_by == "agreement" and agree is None:
        raise ConfigError("color_by='agreement' needs agree (one bool per sample)")
    labels = np.asarray(labels)
    if not (len(teacher) == len(student) == len(labels)):
        raise ConfigError(f"teacher ({len(teacher)}), student ({len(student)}) and labels ({len(labels)}) differ")
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"teacher ({method})", f"student ({method})"])
    if color_by == "class":
        groups = [(k, labels == k) for k in np.unique(labels)]
        names = {k: plotly_text(class_names[k] if class_names is not None else k) for k, _ in groups}
        colors = dict(zip([k for k, _ in groups], sequence(len(groups)), strict=True))
    else:
        a = np.asarray(agree, dtype=bool)
        groups = [("agree", a), ("disagree", ~a)]
        names = {"agree": "agree", "disagree": "disagree"}
        colors = {"agree": BASELINE, "disagree": STUDENT}
    for col, emb in ((1, np.asarray(teacher)), (2, np.asarray(student))):
        for key, mask in groups:
            fig.add_trace(go.Scattergl(x=emb[mask, 0], y=emb[mask, 1], mode="markers", name=str(names[key]),
                                       legendgroup=str(key), showlegend=col == 1,
                                       marker=dict(size=5, color=colors[key], opacity=0.75)), row=1, col=col)
    return apply_theme(fig, title, height=460, **LEGEND_RIGHT)


def agreement_panel(agreement: Any, title: str = "Teacher-student agreement") -> go.Figure:
    """Per-class accuracy of teacher and student (bars) and their agreement (line), with top-1 agreement,
    KL fidelity and both ECEs in the title; ``agreement`` is a ``kdlab.analysis.agreement.Agreement``."""
    pc = agreement.per_class
    x = [plotly_text(c) for c in pc["class"]]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.75, 0.25], subplot_titles=["per class", "calibration (ECE)"])
    fig.add_trace(go.Bar(x=x, y=pc["teacher_acc"], name="teacher", marker_color=TEACHER), row=1, col=1)
    fig.add_trace(go.Bar(x=x, y=pc["student_acc"], name="student", marker_color=STUDENT), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=pc["agreement"], name="agreement", mode="lines+markers",
                             line=dict(color=BASELINE, dash="dot")), row=1, col=1)
    fig.add_trace(go.Bar(x=["teacher", "student"], y=[agreement.teacher_ece, agreement.student_ece],
                         marker_color=[TEACHER, STUDENT], showlegend=False,
                         hovertemplate="ECE %{y:.4f}<extra></extra>"), row=1, col=2)
    fig.update_yaxes(title_text="accuracy / agreement", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title_text="ECE", row=1, col=2)
    full = (f"{title}: top-1 agreement {agreement.top1:.3f} · KL(T||S) {agreement.kl:.4f} · "
            f"acc T {agreement.teacher_acc:.3f} / S {agreement.student_acc:.3f}")
    return apply_theme(fig, full, height=420, barmode="group", **LEGEND_RIGHT)


def student_ranking(df: pd.DataFrame, title: str = "Training-free student ranking",
                    accuracy: pd.Series | None = None) -> go.Figure:
    """The ranked table of ``rank_students``: the chosen metric per candidate (best first); with
    ``accuracy`` (candidate -> accuracy after training), a second axis shows it for comparison."""
    metric = df.attrs.get("metric", "relation")
    names = [plotly_text(c) for c in df["candidate"]]
    fig = make_subplots(specs=[[{"secondary_y": accuracy is not None}]])
    fig.add_trace(go.Bar(x=names, y=df[metric], name=f"{metric} ({'lower' if metric == 'relation' else 'higher'}"
                         " is better)", marker_color=TEACHER, error_y=dict(type="data", array=df["std"])))
    if accuracy is not None:
        acc = [accuracy.get(c, np.nan) for c in df["candidate"]]
        fig.add_trace(go.Scatter(x=names, y=acc, name="accuracy after KD", mode="markers+lines",
                                 marker=dict(color=STUDENT, size=10)), secondary_y=True)
        fig.update_yaxes(title_text="accuracy", secondary_y=True)
    fig.update_yaxes(title_text=metric, secondary_y=False)
    return apply_theme(fig, title, height=420)
