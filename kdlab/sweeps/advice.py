"""Advice from history (AutoDistiller's idea): rank distillation methods for a new (teacher, student, data) from
the finished trials of earlier sweeps in the store.

The model is a kernel regression over configuration features. Each earlier sweep gives, per method, the best
objective its complete trials reached and that method's standing in the sweep (1: the sweep's best method, 0: its
worst). A new spec's prediction for a method is the similarity-weighted mean of those, where a sweep is more similar
the more of data, teacher, student (name and width) it shares with the spec (weight ``SHARED ** matches``). The
table says how much evidence each row rests on; methods no sweep tried are not ranked.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from kdlab.sweeps.result import SweepResult, read_sweep
from kdlab.sweeps.space import apply_values

COLUMNS = ["method", "predicted", "standing", "trials", "best_seen", "best_params", "sweeps", "similarity", "note"]
SHARED = 4.0  # each shared context feature multiplies a sweep's weight by this
FEATURES = ("data", "teacher", "student", "width")


def context(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The features a sweep's situation is compared by: data, teacher and student names, the student's width."""
    teacher = spec.get("teacher") or {}
    student = spec.get("student") or {}
    return {"data": (spec.get("data") or {}).get("name", "mnist5k"), "teacher": teacher.get("name"),
            "student": student.get("name"), "width": (student.get("params") or {}).get("width")}


def similarity(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """``SHARED ** (features in common)`` between two contexts (1: nothing in common)."""
    return float(SHARED ** sum(a.get(k) is not None and a.get(k) == b.get(k) for k in FEATURES))


def method_rows(result: SweepResult) -> list[dict[str, Any]]:
    """Per method of one sweep: its best complete trial, its objective and its standing among the sweep's methods."""
    best: dict[str, Any] = {}
    count: dict[str, int] = {}
    sign = 1.0 if result.direction == "maximize" else -1.0
    for t in result.finished_trials:
        method = apply_values(result.base_spec, t.params).get("method", {}).get("name", "kd")
        count[method] = count.get(method, 0) + 1
        if method not in best or sign * t.value > sign * best[method].value:
            best[method] = t
    if not best:
        return []
    values = np.array([sign * t.value for t in best.values()])
    lo, hi = values.min(), values.max()
    return [{"method": m, "value": t.value, "standing": float((sign * t.value - lo) / (hi - lo)) if hi > lo else 1.0,
             "params": {k: v for k, v in t.params.items() if k != "method.name"}, "trials": count[m],
             "context": context(result.base_spec), "sweep": result.sweep_id}
            for m, t in best.items()]


def history(store: Any) -> list[SweepResult]:
    """The sweeps of the store that have at least one complete trial (oldest first)."""
    out = []
    for rec in reversed(store.jobs(kind="sweep")):
        result = read_sweep(rec.run_dir)
        if result is not None and result.finished_trials:
            out.append(result)
    return out


def advise(store: Any, spec: Mapping[str, Any], exclude: tuple[str, ...] = ()) -> pd.DataFrame:
    """Methods ranked for ``spec`` from the store's earlier sweeps (``exclude``: sweep ids to leave out, e.g. the
    sweep being shown); one row per method, best first, columns ``COLUMNS``. Empty when there is no history."""
    if hasattr(spec, "to_dict"):
        spec = spec.to_dict()
    here = context(spec)
    rows = [r for s in history(store) if s.sweep_id not in exclude for r in method_rows(s)]
    table = []
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method]
        w = np.array([similarity(here, r["context"]) for r in mine])
        nearest = mine[int(np.argmax(w))]
        same = [r for r, wi in zip(mine, w, strict=True) if wi == w.max()]
        table.append({
            "method": method,
            "predicted": float(np.average([r["value"] for r in mine], weights=w)),
            "standing": float(np.average([r["standing"] for r in mine], weights=w)),
            "trials": int(sum(r["trials"] for r in mine)),
            "best_seen": float(max(r["value"] for r in same)),
            "best_params": nearest["params"],
            "sweeps": sorted({r["sweep"] for r in mine}),
            "similarity": float(w.max() / SHARED ** len(FEATURES)),
            "note": _note(here, nearest["context"], len(mine)),
        })
    df = pd.DataFrame(table, columns=COLUMNS)
    return df.sort_values(["standing", "predicted"], ascending=False, ignore_index=True)


def _note(here: Mapping[str, Any], there: Mapping[str, Any], sweeps: int) -> str:
    shared = [k for k in FEATURES if here.get(k) is not None and here.get(k) == there.get(k)]
    what = ", ".join(f"{k} {here[k]}" for k in shared) if shared else "nothing in common with this spec"
    return f"{sweeps} sweep(s); the closest shares {what}"
