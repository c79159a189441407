"""Figures of a hyper-parameter sweep: the objective per trial with the best so far, every trial's learning curve,
parallel coordinates of the parameters, parameter importances, "try these first" advice, the best spec and the
trial table. Pure: a ``SweepResult`` (``kdlab.sweeps.result``) or the advice frame in, ``go.Figure`` out."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from kdlab.errors import ConfigError
from kdlab.viz.text import MONO
from kdlab.viz.theme import (
    BASELINE,
    GAP,
    LEGEND_RIGHT,
    SEQUENCE,
    STUDENT,
    TITLE_PX,
    apply_theme,
    plotly_text,
    sequence,
    with_alpha,
)

if TYPE_CHECKING:
    from kdlab.sweeps.result import SweepResult, Trial

#: one colour per trial state: pruned trials are grey, failed ones the gap red
STATE_COLORS = {"complete": SEQUENCE[1], "pruned": BASELINE, "running": SEQUENCE[0], "queued": "#BBBBBB",
                "failed": GAP, "interrupted": SEQUENCE[4]}
METHOD_KEY = "method.name"
#: the parallel coordinates' line colours: the theme's blues without their near-white end (every line stays visible)
LINE_SCALE = [[0.0, "#9ECAE1"], [0.5, "#4292C6"], [1.0, "#08306B"]]


def short_names(keys: Iterable[str]) -> dict[str, str]:
    """Each dotted space key's shortest unique tail (``method.params.temperature`` -> ``temperature``, but
    ``teacher.params.width`` and ``student.params.width`` keep ``teacher.…``/``student.…`` apart)."""
    keys = list(dict.fromkeys(keys))
    out = {}
    for k in keys:
        parts = k.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if sum(".".join(o.split(".")[-n:]) == tail for o in keys) == 1:
                break
        out[k] = "method" if k == METHOD_KEY else tail
    return out


def param_keys(result: SweepResult) -> list[str]:
    """The space keys any trial drew, in the order they first appear (the columns of ``result.frame()``)."""
    return list(dict.fromkeys(k for t in result.trials for k in t.params))


def method_of(result: SweepResult, trial: Trial) -> str:
    """The distillation method ``trial`` trained with: its drawn ``method.name``, else the base spec's."""
    drawn = trial.params.get(METHOD_KEY)
    return str(drawn if drawn is not None else (result.base_spec.get("method") or {}).get("name", "?"))


def shown_value(result: SweepResult, trial: Trial) -> float | None:
    """The objective a trial is drawn at: its value, else (pruned, running) the best point of its curve."""
    if trial.value is not None:
        return float(trial.value)
    ys = [float(y) for _e, y in trial.curve if y is not None and math.isfinite(y)]
    if not ys:
        return None
    return max(ys) if result.direction == "maximize" else min(ys)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _hover(result: SweepResult, t: Trial, names: Mapping[str, str]) -> str:
    params = " · ".join(f"{plotly_text(names.get(k, k))} {plotly_text(_fmt(v))}" for k, v in t.params.items())
    v = shown_value(result, t)
    value = "–" if v is None else f"{v:.4g}"
    note = f"<br>{plotly_text(t.note)}" if t.note else ""
    return (f"#{t.number} {plotly_text(method_of(result, t))} ({t.state}, {len(t.curve)} epochs)<br>"
            f"{plotly_text(result.metric)} {value}<br>{params}{note}")


def counts_line(result: SweepResult) -> str:
    """``12 complete · 8 pruned · 1 failed · 1 running`` (states with no trial left out) and the trials asked for."""
    counts = result.counts()
    order = ("complete", "pruned", "failed", "interrupted", "running", "queued")
    said = " · ".join(f"{counts[s]} {s}" for s in order if counts.get(s))
    return f"{said or 'no trials yet'} (of {result.n_trials})"


def trials_over_time(result: SweepResult, title: str | None = None) -> go.Figure:
    """The objective of each trial against its number, one colour per state (pruned grey, drawn at the best point
    of their curve), and the best complete trial so far as a step line."""
    names = short_names(param_keys(result))
    fig = go.Figure()
    for state, color in STATE_COLORS.items():
        ts = [t for t in result.trials if t.state == state and shown_value(result, t) is not None]
        if not ts:
            continue
        hollow = state in ("running", "queued")
        fig.add_trace(go.Scatter(
            x=[t.number for t in ts], y=[shown_value(result, t) for t in ts], mode="markers", name=state,
            marker=dict(color="white" if hollow else color, size=9 if state == "complete" else 7,
                        line=dict(color=color, width=2 if hollow else 0),
                        symbol="x" if state == "failed" else "circle"),
            hovertext=[_hover(result, t, names) for t in ts], hoverinfo="text", meta={"state": state}))
    best = result.best_so_far()
    if best:
        last = max(t.number for t in result.trials)
        xs, ys = [n for n, _ in best] + [last], [v for _, v in best] + [best[-1][1]]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=STUDENT, width=2, shape="hv"),
                                 name="best so far", hoverinfo="skip", meta={"state": "best"}))
    fig.update_xaxes(title_text="trial", rangemode="tozero", dtick=1 if len(result.trials) <= 12 else None)
    fig.update_yaxes(title_text=plotly_text(result.metric))
    title = title or f"Trials: {plotly_text(result.metric)} per trial ({counts_line(result)})"
    return apply_theme(fig, title, height=400, **LEGEND_RIGHT)


def learning_curves(result: SweepResult, title: str | None = None) -> go.Figure:
    """Every trial's objective after each epoch: complete trials in their method's colour, running ones dotted,
    pruned ones thin grey, failed ones dashed red, the best trial thick orange on top."""
    names = short_names(param_keys(result))
    methods = list(dict.fromkeys(method_of(result, t) for t in result.trials))
    colors = dict(zip(methods, sequence(len(methods)), strict=True))
    best = result.best
    fig = go.Figure()
    shown: set[str] = set()

    def add(t: Trial, group: str, color: str, width: float, dash: str = "solid", opacity: float = 1.0) -> None:
        fig.add_trace(go.Scatter(
            x=[e for e, _ in t.curve], y=[y for _, y in t.curve], mode="lines+markers" if len(t.curve) == 1
            else "lines", name=plotly_text(group), legendgroup=group, showlegend=group not in shown,
            line=dict(color=color, width=width, dash=dash), opacity=opacity, marker=dict(size=5),
            hovertext=_hover(result, t, names), hoverinfo="text", meta={"trial": t.number, "state": t.state}))
        shown.add(group)

    with_curves = [t for t in result.trials if t.curve]
    for t in (t for t in with_curves if t.state == "pruned"):
        add(t, "pruned", BASELINE, 1.0, opacity=0.6)
    for t in (t for t in with_curves if t.state in ("failed", "interrupted")):
        add(t, t.state, STATE_COLORS[t.state], 1.0, dash="dash")
    for t in (t for t in with_curves if t.state in ("complete", "running", "queued") and t is not best):
        add(t, method_of(result, t), colors[method_of(result, t)], 1.5, dash="dot" if t.state != "complete"
            else "solid")
    if best is not None and best.curve:
        add(best, f"best: #{best.number} ({method_of(result, best)})", STUDENT, 4.0)
    fig.update_xaxes(title_text="epoch", dtick=1 if max((len(t.curve) for t in with_curves), default=0) <= 12
                     else None)
    fig.update_yaxes(title_text=plotly_text(result.metric))
    title = title or f"Learning curves: {plotly_text(result.metric)} by epoch, every trial"
    return apply_theme(fig, title, height=420, **LEGEND_RIGHT)


def _categorical(values: list[Any]) -> bool:
    return any(isinstance(v, (str, bool)) for v in values)


def _space_entry(space: Mapping[str, Any], key: str) -> Any:
    """The space's definition of ``key`` (a choice list or ``{low, high, log}``), also under ``method.params``."""
    if key in space:
        return space[key]
    prefix = "method.params."
    if key.startswith(prefix):
        per_method = space.get("method.params") or (space.get("method") or {}).get("params") or {}
        for params in per_method.values():
            if isinstance(params, Mapping) and key[len(prefix):] in params:
                return params[key[len(prefix):]]
    return None


def parallel_coordinates(result: SweepResult, method: str | None = None, title: str | None = None) -> go.Figure:
    """Complete trials (of ``method``, or all) as lines through one axis per parameter that every one of them drew,
    then the objective; lines coloured by the objective. Categories (the method) are axes with their names as tick
    labels; log-scaled parameters are drawn as log10 with their values as tick labels."""
    frame = result.frame()
    methods = pd.Series([method_of(result, t) for t in result.trials], index=frame.index)
    done = frame[(frame["state"] == "complete") & frame["value"].notna() & (method is None or methods == method)]
    if done.empty:
        raise ConfigError(f"sweep {result.sweep_id}: no complete trial{'' if method is None else ' of ' + method} "
                          "to draw")
    names = short_names(param_keys(result))
    keys = [k for k in names if done[k].notna().all() and not (method and k == METHOD_KEY)]
    dims = []
    for k in keys:
        values = list(done[k])
        label = plotly_text(names[k])
        if _categorical(values):
            entry = _space_entry(result.space, k)
            cats = [c for c in entry if c in values] if isinstance(entry, list) else []
            cats += [v for v in dict.fromkeys(values) if v not in cats]
            dims.append(dict(label=label, values=[cats.index(v) for v in values], tickvals=list(range(len(cats))),
                             ticktext=[plotly_text(c) for c in cats], range=[-0.3, len(cats) - 0.7]))
            continue
        nums = np.asarray(values, dtype=float)
        entry = _space_entry(result.space, k)
        if isinstance(entry, Mapping) and entry.get("log") and (nums > 0).all():
            ticks = sorted(set(nums))
            ticks = ticks if len(ticks) <= 6 else list(np.geomspace(min(ticks), max(ticks), 5))
            dims.append(dict(label=f"{label} (log)", values=np.log10(nums).tolist(),
                             tickvals=np.log10(ticks).tolist(), ticktext=[f"{v:.3g}" for v in ticks]))
        elif isinstance(entry, list) and set(nums) <= {float(c) for c in entry}:  # numeric choices as ticks
            dims.append(dict(label=label, values=nums.tolist(), tickvals=sorted(float(c) for c in entry),
                             ticktext=[_fmt(c) for c in sorted(entry)]))
        else:
            dims.append(dict(label=label, values=nums.tolist()))
    v = done["value"].astype(float).tolist()
    dims.append(dict(label=plotly_text(result.metric), values=v))
    fig = go.Figure(go.Parcoords(
        dimensions=dims, domain=dict(x=[0.0, 0.9]), labelangle=0, labelside="top",
        line=dict(color=v, colorscale=LINE_SCALE, showscale=True, colorbar=dict(title=plotly_text(result.metric))),
        meta={"keys": keys, "numbers": [int(n) for n in done["number"]]}))
    which = "" if method is None else f" of {plotly_text(method)}"
    title = title or f"Parameters of the {len(done)} complete trials{which}, coloured by {plotly_text(result.metric)}"
    return apply_theme(fig, title, height=440, margin=dict(t=TITLE_PX + 60, b=40, l=70, r=70))


def importance_bars(importances: Mapping[str, float], title: str = "Parameter importances") -> go.Figure:
    """Each parameter's share of the objective's variance (%), the most important on top."""
    items = sorted(((k, float(v)) for k, v in importances.items() if v is not None and math.isfinite(v)),
                   key=lambda kv: -kv[1])
    if not items:
        raise ConfigError("importances: none computed yet (they need a few complete trials)")
    names = short_names(k for k, _ in items)
    fig = go.Figure(go.Bar(x=[100 * v for _, v in items], y=[plotly_text(names[k]) for k, _ in items],
                           orientation="h", marker_color=SEQUENCE[1], text=[f"{100 * v:.0f}%" for _, v in items],
                           textposition="auto", customdata=[plotly_text(k) for k, _ in items],
                           hovertemplate="%{customdata}<br>%{x:.1f}% of the variance<extra></extra>"))
    fig.update_xaxes(title_text="share of the objective's variance (%)", rangemode="tozero")
    fig.update_yaxes(autorange="reversed", type="category")
    return apply_theme(fig, title, height=int(TITLE_PX + 130 + 32 * len(items)), showlegend=False,
                       margin=dict(t=TITLE_PX + 20, b=60, l=130, r=20))


ADVICE_COLUMNS = ("method", "predicted", "trials", "best_seen", "best_params", "sweeps", "note")


def advice_bars(advice: pd.DataFrame, metric: str = "val/acc",
                title: str = "Try these first (top first): predicted objective per method") -> go.Figure:
    """``kdlab.sweeps.advice.advise``'s frame in its order (best first) as bars of the predicted objective, each
    saying how many finished trials of earlier sweeps it rests on (and the method's standing among the methods of
    similar sweeps, which ranks it, when the frame has it), with the best value seen as a diamond."""
    missing = [c for c in ADVICE_COLUMNS if c not in advice.columns]
    if missing:
        raise ConfigError(f"advice: missing columns {missing}; expected {list(ADVICE_COLUMNS)}")
    if advice.empty:
        raise ConfigError("advice: no finished sweep trials in the store to advise from")
    n = [int(x) for x in advice["trials"]]
    methods = [f"{plotly_text(m)} ({k} trial{'s' if k != 1 else ''})" for m, k in zip(advice["method"], n,
                                                                                     strict=True)]
    pred = pd.to_numeric(advice["predicted"], errors="coerce").tolist()
    standing = pd.to_numeric(advice.get("standing", pd.Series(np.nan, index=advice.index)), errors="coerce").tolist()
    seen = pd.to_numeric(advice["best_seen"], errors="coerce").tolist()
    params = [" · ".join(f"{plotly_text(k)} {plotly_text(_fmt(v))}" for k, v in (p or {}).items())
              for p in advice["best_params"]]
    notes = [plotly_text(x or "") for x in advice["note"]]
    fig = go.Figure(go.Bar(
        x=pred, y=methods, orientation="h", name="predicted", marker_color=[STUDENT] + [SEQUENCE[1]] * (len(n) - 1),
        text=[(f"{p:.3g}" if p == p else "") + (f" · standing {st:.2f}" if st == st else "")
              for p, st in zip(pred, standing, strict=True)], textposition="inside", insidetextanchor="start",
        customdata=list(zip(n, params, notes, strict=True)),
        hovertemplate="%{y}: predicted %{x:.4g} from %{customdata[0]} trials<br>best params: %{customdata[1]}"
                      "<br>%{customdata[2]}<extra></extra>"))
    if any(s == s for s in seen):
        fig.add_trace(go.Scatter(x=seen, y=methods, mode="markers", name="best seen",
                                 marker=dict(symbol="diamond", size=11, color=BASELINE),
                                 hovertemplate="%{y}: best seen %{x:.4g}<extra></extra>"))
    fig.update_xaxes(title_text=f"{plotly_text(metric)} (predicted)", rangemode="tozero")
    fig.update_yaxes(autorange="reversed", type="category")
    return apply_theme(fig, title, height=int(TITLE_PX + 140 + 36 * len(methods)),
                       margin=dict(t=TITLE_PX + 20, b=60, l=150, r=20), **LEGEND_RIGHT)


def yaml_text(data: Mapping[str, Any]) -> str:
    """``data`` as block YAML (keys in their order)."""
    import yaml

    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)


def spec_card(spec: Mapping[str, Any], title: str = "Best spec") -> go.Figure:
    """A spec as YAML in a one-cell table (monospace, indentation kept): the report's copy-and-run view."""
    lines = yaml_text(spec).rstrip("\n").split("\n")
    cell = "<br>".join(plotly_text(ln).replace(" ", "\u00a0") for ln in lines)
    fig = go.Figure(go.Table(header=dict(values=[""], height=0, fill_color="white", line=dict(width=0)),
                             cells=dict(values=[[cell]], align="left", fill_color="#FAFAFA",
                                        font=dict(family=MONO, size=12), line=dict(color="#EEEEEE"))))
    return apply_theme(fig, title, height=int(TITLE_PX + 60 + 19 * len(lines)),
                       margin=dict(t=TITLE_PX + 10, b=10, l=10, r=10))


def trials_table(result: SweepResult, title: str | None = None) -> go.Figure:
    """One row per trial: number, state, objective, epochs, seconds, every parameter, run id (the day they share
    in the header); pruned rows grey, failed ones red, the best one orange."""
    frame = result.frame()
    keys = param_keys(result)
    names = short_names(keys)
    best = result.best
    # run ids start with their day (``20261130-172237-78c6bc``): a prefix every trial shares goes to the header
    ids = [str(r) for r in frame["run_id"] if r]
    day = ids[0].split("-")[0] + "-" if ids and "-" in ids[0] else ""
    day = day if day and all(r.startswith(day) for r in ids) else ""
    cols = ["#", "state", plotly_text(result.metric), "epochs", "s", *(plotly_text(names[k]) for k in keys),
            f"run {plotly_text(day)}…" if day else "run"]

    def num(v: Any, fmt: str) -> str:
        return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)

    values = [list(frame["number"]), list(frame["state"]), [num(v, ".4g") for v in frame["value"]],
              list(frame["epochs"]), [num(v, ".1f") for v in frame["duration_s"]],
              *[["–" if v is None or (isinstance(v, float) and math.isnan(v)) else plotly_text(_fmt(v))
                 for v in frame[k]] for k in keys],
              [plotly_text(str(r)[len(day):] if r else "–") for r in frame["run_id"]]]
    fills = [with_alpha(STUDENT, 0.18) if best is not None and n == best.number else
             with_alpha(STATE_COLORS.get(s, BASELINE), 0.12) if s in ("pruned", "failed", "interrupted") else "white"
             for n, s in zip(frame["number"], frame["state"], strict=True)]
    fonts = [BASELINE if s == "pruned" else "#222222" for s in frame["state"]]
    # each column as wide as its longest text (header or cell): narrow figures squeeze every column alike
    widths = [max(1.2 * len(str(c)), *(len(str(v)) for v in col)) + 2 for c, col in zip(cols, values, strict=True)]
    fig = go.Figure(go.Table(
        columnwidth=widths,
        header=dict(values=[f"<b>{c}</b>" for c in cols], align="left", fill_color="#F2F2F2", font=dict(size=10)),
        cells=dict(values=values, align="left", fill_color=[fills] * len(cols), height=22,
                   font=dict(size=10, color=[fonts] * len(cols)))))
    title = title or f"Trials ({counts_line(result)})"
    return apply_theme(fig, title, height=int(TITLE_PX + 70 + 23 * max(len(frame), 1)),
                       margin=dict(t=TITLE_PX + 10, b=10, l=10, r=10))


def sweep_figures(result: SweepResult) -> dict[str, go.Figure]:
    """The figures a sweep has data for, keyed by what they show (``trials``, ``curves``, ``parallel``,
    ``importances``): the dashboard page, the notebook widget and the report draw the same ones."""
    out: dict[str, go.Figure] = {}
    if any(shown_value(result, t) is not None for t in result.trials):
        out["trials"] = trials_over_time(result)
    if any(t.curve for t in result.trials):
        out["curves"] = learning_curves(result)
    if len(result.finished_trials) >= 2 and param_keys(result):
        out["parallel"] = parallel_coordinates(result)
    if any(v is not None and math.isfinite(v) for v in result.importances.values()):
        out["importances"] = importance_bars(result.importances)
    return out


__all__ = ["STATE_COLORS", "advice_bars", "counts_line", "importance_bars", "learning_curves", "method_of",
           "param_keys", "parallel_coordinates", "short_names", "shown_value", "spec_card", "sweep_figures",
           "trials_over_time", "trials_table", "yaml_text"]
