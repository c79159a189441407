"""Language-model distillation figures: the token-divergence view of a text, per-domain bits per byte of the
teacher and the students, DDK's domain mixture over steps, the loss terms and validation bits per byte of a run,
and the models' generations. Inputs are what ``kdlab.jobs.lm_distill`` saves (``LMArtifacts``' DataFrames) and the
run store's tidy metrics; colours follow the model's role.

The token view is a plotly figure (one horizontal bar per token, laid out in wrapped lines of ``columns``
characters), so the same object renders in a notebook, on the dashboard and in the self-contained report: each
bar's colour is the token's KL(teacher || student) on a sequential scale with a colour bar, its label the token
with whitespace made visible (space ``·``, tab ``→``, newline ``↵``, which also ends the line), and its hover the
token, the KL, both models' log-probabilities of it and both models' top candidates. Every string that comes from
the text or the models is HTML-escaped for plotly.js (``plotly_text``).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdlab.errors import ConfigError
from kdlab.viz.theme import (
    SEQUENTIAL,
    TEACHER,
    TITLE_PX,
    apply_theme,
    legend_below,
    plotly_text,
    run_colors,
    sequence,
)

TOKEN_COLUMNS = ("token", "kl", "student_logp", "teacher_logp", "student_top", "teacher_top")
EVAL_COLUMNS = ("model", "domain", "bpb")
MIXTURE_COLUMNS = ("step", "domain", "weight")
VISIBLE = {" ": "·", "\t": "→", "\r": "␍", "\n": "↵"}
LINE_PX = 24  # px per line of the token view
COLORBAR_PX = 150  # the colour bar's length; the view is at least this tall
MONO = "ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace"
MODEL_ORDER = ("teacher", "teacher (OMP transplant)", "student", "no-KD student")


def _need(df: pd.DataFrame | None, cols: tuple[str, ...], what: str) -> None:
    if df is None:
        raise ConfigError(f"{what}: got None; expected a DataFrame with columns {list(cols)}")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ConfigError(f"{what}: missing column {missing[0]!r}; expected {list(cols)}")


def visible(token: str) -> str:
    """``token`` with its whitespace drawn (space ``·``, tab ``→``, CR ``␍``, newline ``↵``); other characters kept."""
    return "".join(VISIBLE.get(c, c) for c in str(token)) or "∅"


def wrap_tokens(tokens: list[str], columns: int = 80) -> list[tuple[int, int, int]]:
    """``(line, column, width)`` of each token laid out in lines of ``columns`` characters: a token that does not
    fit starts a new line, a token holding a newline ends its line, a token wider than a line is cut to it."""
    if columns < 8:
        raise ConfigError(f"columns: {columns} is too narrow; give at least 8 characters per line")
    out, line, col = [], 0, 0
    for tok in tokens:
        width = min(len(visible(tok)), columns)
        if col and col + width > columns:
            line, col = line + 1, 0
        out.append((line, col, width))
        col += width
        if "\n" in str(tok):
            line, col = line + 1, 0
    return out


def token_view(tokens: pd.DataFrame,
               title: str = "Where the student differs from the teacher: KL(teacher ‖ student) per token",
               columns: int = 80, max_tokens: int = 512, kl_max: float | None = None) -> go.Figure:
    """Each token of a text coloured by KL(teacher || student) of the next-token distributions that predicted it
    (nats), hover: the token, the KL, each model's log-probability of it and each model's top candidates.

    ``tokens`` is ``kdlab.text.token_divergence``'s DataFrame (``LMArtifacts.tokens``); the first ``max_tokens``
    are drawn, wrapped at ``columns`` characters. The colour scale runs from 0 to ``kl_max`` (default: the 98th
    percentile, so one outlier does not wash out the rest; larger values take the darkest colour).
    """
    _need(tokens, TOKEN_COLUMNS, "tokens")
    df = tokens.iloc[:max_tokens]
    strings = [str(t) for t in df["token"]]
    places = wrap_tokens(strings, columns)
    kl = pd.to_numeric(df["kl"], errors="coerce").to_numpy(dtype=float)
    finite = kl[np.isfinite(kl)]
    top = float(kl_max) if kl_max is not None else (float(np.quantile(finite, 0.98)) if len(finite) else 1.0)
    top = top if top > 0 else (float(finite.max()) if len(finite) and finite.max() > 0 else 1.0)
    lines = (places[-1][0] + 1) if places else 1
    s_lp = pd.to_numeric(df["student_logp"], errors="coerce").to_numpy(dtype=float)
    t_lp = pd.to_numeric(df["teacher_logp"], errors="coerce").to_numpy(dtype=float)
    custom = [[plotly_text(repr(s)), float(k), float(a), float(b), plotly_text(st), plotly_text(tt)]
              for s, k, a, b, st, tt in zip(strings, kl, s_lp, t_lp, df["student_top"].astype(str),
                                            df["teacher_top"].astype(str), strict=True)]
    fig = go.Figure(go.Bar(
        orientation="h", y=[p[0] for p in places], x=[p[2] for p in places], base=[p[1] for p in places],
        text=[plotly_text(visible(s))[: columns * 6] for s in strings], textposition="inside",
        insidetextanchor="middle", textangle=0, constraintext="none", cliponaxis=True,
        textfont=dict(family=MONO, size=13), width=0.86, customdata=custom, name="tokens",
        marker=dict(color=kl, cmin=0.0, cmax=top, colorscale=SEQUENTIAL, line=dict(color="#FFFFFF", width=1),
                    colorbar=dict(title=dict(text="KL, nats", side="right"), outlinewidth=0, thickness=14,
                                  lenmode="pixels", len=COLORBAR_PX, y=1.0, yanchor="top")),
        hovertemplate=("<b>%{customdata[0]}</b><br>KL %{customdata[1]:.4f} nats<br>"
                       "log p student %{customdata[2]:.3f} · teacher %{customdata[3]:.3f}<br>"
                       "student top: %{customdata[4]}<br>teacher top: %{customdata[5]}<extra></extra>"),
    ))
    fig.update_xaxes(visible=False, range=[0, columns], fixedrange=True)
    shown = max(lines, COLORBAR_PX / LINE_PX)  # short texts: lines at the top, room for the colour bar
    fig.update_yaxes(visible=False, range=[shown - 0.5, -0.5], fixedrange=True)
    note = f" (first {max_tokens} of {len(tokens)} tokens)" if len(tokens) > max_tokens else ""
    return apply_theme(fig, plotly_text(title) + note, height=int(TITLE_PX + 30 + max(lines * LINE_PX, COLORBAR_PX)),
                       margin=dict(t=TITLE_PX + 14, b=16, l=10, r=90), showlegend=False, bargap=0,
                       uniformtext=dict(minsize=9, mode="show"), hoverlabel=dict(font=dict(family=MONO)))


def _models(df: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(df["model"].astype(str)))
    return [m for m in MODEL_ORDER if m in present] + [m for m in present if m not in MODEL_ORDER]


def bpb_bars(table: pd.DataFrame, title: str = "Bits per byte on held-out text, per domain") -> go.Figure:
    """Bits per UTF-8 byte (lower is better; comparable across tokenizers) of each model on each domain's test
    text and on all of it, one bar group per domain; hover adds perplexity, agreement and KL with the teacher."""
    _need(table, EVAL_COLUMNS, "eval")
    models = _models(table)
    colors = run_colors(models)
    domains = [d for d in dict.fromkeys(table["domain"].astype(str)) if d != "all"]
    domains += ["all"] if "all" in set(table["domain"].astype(str)) else []
    fig = go.Figure()
    for m in models:
        d = table[table["model"].astype(str) == m]
        d = d.set_index(d["domain"].astype(str)).reindex(domains)
        extra = np.column_stack([d.get(c, pd.Series(np.nan, index=d.index)).to_numpy(dtype=float)
                                 for c in ("ppl", "agreement", "kl")])
        omp = "OMP" in m
        fig.add_trace(go.Bar(
            x=[plotly_text(x) for x in domains], y=d["bpb"].to_numpy(dtype=float), name=plotly_text(m),
            marker=dict(color=colors[m] if not omp else TEACHER,
                        pattern=dict(shape="/", fgcolor="#FFFFFF") if omp else None),
            customdata=extra,
            hovertemplate=(f"{plotly_text(m)}<br>%{{x}}: %{{y:.3f}} bits/byte<br>perplexity %{{customdata[0]:.2f}}"
                           "<br>agreement %{customdata[1]:.3f} · KL %{customdata[2]:.4f}<extra></extra>")))
    fig.update_yaxes(title_text="bits per byte")
    if domains and domains[-1] == "all":  # the overall numbers, set apart from the domains
        fig.add_vrect(x0=len(domains) - 1.5, x1=len(domains) - 0.5, fillcolor="#F2F2F2", line_width=0, layer="below")
    return apply_theme(fig, title, height=420, barmode="group", **legend_below(420))


def gap_closed(table: pd.DataFrame) -> dict[str, float]:
    """Per domain, the share of the no-KD student's bits-per-byte gap to the teacher that KD closed:
    ``(no-KD - KD) / (no-KD - teacher)`` (NaN where a model is missing or the gap is zero)."""
    _need(table, EVAL_COLUMNS, "eval")
    p = table.pivot_table(index="domain", columns="model", values="bpb", aggfunc="first")
    out = {}
    for dom in p.index:
        row = p.loc[dom]
        try:
            gap = row["no-KD student"] - row["teacher"]
            out[str(dom)] = float((row["no-KD student"] - row["student"]) / gap) if gap else math.nan
        except KeyError:
            out[str(dom)] = math.nan
    return out


def mixture_area(mixture: pd.DataFrame, title: str = "DDK domain mixture over training") -> go.Figure:
    """The share of each domain in the training batches against the step (DDK re-weights towards the domains
    where the student trails the teacher most), as stacked areas summing to 1."""
    _need(mixture, MIXTURE_COLUMNS, "mixture")
    domains = list(dict.fromkeys(mixture["domain"].astype(str)))
    fig = go.Figure()
    for dom, color in zip(domains, sequence(len(domains)), strict=True):
        d = mixture[mixture["domain"].astype(str) == dom].sort_values("step")
        fig.add_trace(go.Scatter(x=d["step"], y=d["weight"], name=plotly_text(dom), stackgroup="mix", mode="lines",
                                 line=dict(color=color, width=0.5),
                                 hovertemplate=f"{plotly_text(dom)}<br>step %{{x}}<br>share %{{y:.3f}}<extra></extra>"))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="share of the batches", range=[0, 1.0])
    return apply_theme(fig, title, height=400, **legend_below(400))


def lm_curves(metrics: pd.DataFrame, title: str = "Distillation: loss terms and validation bits per byte") -> go.Figure:
    """Per-step loss terms (``loss/*``), validation bits per byte (``val/bpb``) and, when logged, TAID's
    interpolation ``t``, from the run store's tidy metrics (``store.metrics(run_id)``) of an ``lm_distill`` run."""
    _need(metrics, ("key", "value", "step"), "metrics")
    m = metrics[pd.to_numeric(metrics["value"], errors="coerce").notna()]
    keys = list(dict.fromkeys(m["key"].astype(str)))
    panels = [("loss terms", [k for k in keys if k.startswith("loss/")]),
              ("validation bits per byte", [k for k in keys if k in ("val/bpb",)]),
              ("TAID interpolation t", [k for k in keys if k == "method/taid_t"])]
    panels = [(n, ks) for n, ks in panels if ks]
    if not panels:
        from kdlab.viz.curves import empty_figure

        return empty_figure(title, "no metrics yet: the curves appear with the run's first steps")
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[n for n, _ in panels], horizontal_spacing=0.08)
    colors = dict(zip([k for _, ks in panels for k in ks], sequence(sum(len(ks) for _, ks in panels)), strict=True))
    for c, (_name, ks) in enumerate(panels, start=1):
        for k in ks:
            d = m[m["key"].astype(str) == k].sort_values("step")
            fig.add_trace(go.Scatter(x=d["step"], y=d["value"], name=plotly_text(k), mode="lines+markers"
                                     if len(d) < 30 else "lines", line=dict(color=colors[k]),
                                     hovertemplate=f"{plotly_text(k)}<br>step %{{x}}<br>%{{y:.4g}}<extra></extra>"),
                          row=1, col=c)
        fig.update_xaxes(title_text="step", row=1, col=c)
    return apply_theme(fig, title, height=400, **legend_below(400, top=TITLE_PX + 50))


def samples_table(samples: list[dict[str, str]], title: str = "Generations (temperature 0.8)") -> go.Figure:
    """The prompts and each model's continuation, as a table (whitespace made visible at line ends)."""
    if not samples:
        raise ConfigError("samples: give at least one {'prompt': ..., <model>: ...} row")
    cols = list(dict.fromkeys(k for s in samples for k in s))

    def cell(text: Any) -> str:
        return plotly_text(str(text if text is not None else "")).replace("\n", "↵<br>")

    fig = go.Figure(go.Table(
        columnwidth=[2] + [1] * (len(cols) - 1),
        header=dict(values=[f"<b>{plotly_text(c)}</b>" for c in cols], align="left", fill_color="#F2F2F2"),
        cells=dict(values=[[cell(s.get(c)) for s in samples] for c in cols], align="left",
                   font=dict(family=MONO, size=11))))
    return apply_theme(fig, title, height=120 + 220 * len(samples), margin=dict(t=TITLE_PX + 10, b=10, l=10, r=10))


__all__ = ["bpb_bars", "gap_closed", "lm_curves", "mixture_area", "samples_table", "token_view", "visible",
           "wrap_tokens"]
