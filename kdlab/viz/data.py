"""Adapters from what the lab produces to what the figure builders draw (numpy / pandas only).

``as_history`` turns any form of training metrics into one wide table (one row per epoch or step, one
column per metric key):

- a trainer history: list of per-epoch dicts (``TrainResult.history``, ``results.json``'s ``history``);
- a result dict with a ``history`` entry (``ExperimentResult.to_dict()``);
- a tidy metrics DataFrame with columns ``key``, ``value`` and ``epoch`` and/or ``step`` (the run store's
  ``store.metrics(run_id)``; when it has a ``kind`` column, the ``"epoch"`` rows are used if there are any);
- a wide DataFrame (``store.history(run_id)``, or ``pd.DataFrame(history)``).

Array helpers accept numpy arrays, lists and torch tensors (converted without importing torch).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from kdlab.errors import ConfigError, ShapeError

X_COLUMNS = ("epoch", "step")


def as_history(metrics: Any) -> pd.DataFrame:
    """Metrics in any supported form (see the module doc) as a wide float table.

    The index is named ``epoch`` (or ``step`` when there are no epochs), sorted ascending; columns are the
    metric keys in first-seen order; non-numeric entries are dropped.
    """
    if isinstance(metrics, Mapping):
        if "history" not in metrics:
            raise ConfigError("metrics: a dict must be a result with a 'history' entry "
                              f"(got keys {sorted(map(str, metrics))[:10]})")
        metrics = metrics["history"]
    if metrics is None:
        return _empty("epoch")
    if isinstance(metrics, pd.DataFrame):
        if {"key", "value"} <= set(metrics.columns):
            return _from_tidy(metrics)
        return _from_wide(metrics)
    if isinstance(metrics, Sequence) and not isinstance(metrics, (str, bytes)):
        rows = list(metrics)
        if rows and not all(isinstance(r, Mapping) for r in rows):
            raise ConfigError("metrics: a history must be a list of dicts (one per epoch)")
        return _from_wide(pd.DataFrame([dict(r) for r in rows]))
    raise ConfigError(f"metrics: expected a history (list of dicts), a result dict or a DataFrame, "
                      f"got {type(metrics).__name__}")


def _empty(x: str) -> pd.DataFrame:
    return pd.DataFrame(index=pd.Index([], name=x, dtype="float64"))


def _numeric(df: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for c in df.columns:
        col = pd.to_numeric(df[c], errors="coerce")
        if col.notna().any() or df[c].isna().all():
            out[str(c)] = col.astype("float64")
    return pd.DataFrame(out, index=df.index)


def _from_wide(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty and not len(df.columns):
        return _empty("epoch")
    for x in X_COLUMNS:
        if x in df.columns:
            df = df.set_index(x)
            break
    else:
        if df.index.name not in X_COLUMNS:
            df = df.copy()
            df.index = pd.RangeIndex(1, len(df) + 1)
            df.index.name = "epoch"
    x = str(df.index.name)
    df = _numeric(df.drop(columns=[c for c in X_COLUMNS if c in df.columns]))
    df.index = pd.Index(pd.to_numeric(df.index, errors="coerce").astype("float64"), name=x)
    return df[df.index.notna()].sort_index(kind="stable")


def _from_tidy(df: pd.DataFrame) -> pd.DataFrame:
    if "kind" in df.columns and (df["kind"] == "epoch").any():
        df = df[df["kind"] == "epoch"]
    if "epoch" in df.columns and df["epoch"].notna().any():
        x = "epoch"
    elif "step" in df.columns:
        x = "step"
    else:
        raise ConfigError("metrics: a tidy metrics table needs an 'epoch' or 'step' column next to key/value")
    df = df[df[x].notna()]
    if df.empty:
        return _empty(x)
    order = list(dict.fromkeys(df["key"].astype(str)))
    values = pd.to_numeric(df["value"], errors="coerce").astype("float64")
    tidy = pd.DataFrame({x: df[x].astype("float64").to_numpy(), "key": df["key"].astype(str).to_numpy(),
                         "value": values.to_numpy()})
    wide = tidy.groupby([x, "key"], sort=True)["value"].last().unstack("key")
    wide = wide.reindex(columns=[k for k in order if k in wide.columns])
    wide.columns.name = None
    wide.index.name = x
    return wide.astype("float64")


#: Curves longer than this are thinned for display (a browser draws 20,000-point runs slowly).
MAX_POINTS = 1500
#: Curves up to this many points also show a marker per point.
MARKER_POINTS = 60


def series(history: pd.DataFrame, key: str, max_points: int | None = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """The (x, y) points of ``key`` in a wide history, missing values dropped; more than ``max_points``
    are thinned to that many evenly spaced points (the first and last kept; ``None`` keeps all)."""
    col = history[key].dropna()
    x, y = col.index.to_numpy(dtype="float64"), col.to_numpy(dtype="float64")
    if max_points is not None and len(x) > max_points:
        keep = np.unique(np.linspace(0, len(x) - 1, max_points).round().astype(int))
        x, y = x[keep], y[keep]
    return x, y


def line_mode(x: np.ndarray) -> str:
    """Plotly ``mode`` of a curve: markers for short curves only (thousands of SVG markers are slow)."""
    return "lines+markers" if len(x) <= MARKER_POINTS else "lines"


def loss_terms(history: pd.DataFrame) -> list[str]:
    """The per-term training loss keys (``train/<term>``), without the total and the accuracy."""
    return [k for k in history.columns if k.startswith("train/") and k not in ("train/loss", "train/acc")
            and not k.endswith("/acc") and history[k].notna().any()]


# -- arrays --------------------------------------------------------------------------------------------

def to_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """A numpy array from an array, list or (CPU/GPU, grad or not) torch tensor."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def as_labels(labels: Any, what: str = "labels") -> np.ndarray:
    """Integer class labels, shape (N,)."""
    y = to_numpy(labels)
    if y.ndim != 1:
        raise ShapeError(f"{what}: expected shape (N,), got {y.shape}")
    if y.size and not np.all(np.equal(np.mod(y, 1), 0)):
        raise ShapeError(f"{what}: expected integer class indices")
    return y.astype(np.int64)


def as_predictions(logits_or_preds: Any, what: str = "predictions") -> np.ndarray:
    """Predicted classes from logits / probabilities (N, C) (argmax) or from class indices (N,)."""
    a = to_numpy(logits_or_preds)
    if a.ndim == 2:
        return a.argmax(axis=1).astype(np.int64)
    return as_labels(a, what)


def is_probabilities(a: np.ndarray, atol: float = 1e-4) -> bool:
    """Whether every row of ``a`` (N, C) is a probability vector (non-negative, sums to 1)."""
    return bool(a.size and np.all(a >= 0) and np.all(a <= 1) and np.allclose(a.sum(axis=1), 1.0, atol=atol))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def as_probabilities(probs_or_logits: Any, logits: bool | None = None, what: str = "probs") -> np.ndarray:
    """Float64 class probabilities (N, C) from probabilities or logits.

    ``logits=None`` decides by the values: rows that are already probability vectors are kept, anything
    else goes through a softmax.
    """
    a = to_numpy(probs_or_logits, dtype=np.float64)
    if a.ndim != 2:
        raise ShapeError(f"{what}: expected probabilities or logits of shape (N, C), got {a.shape}")
    if logits is None:
        logits = not is_probabilities(a)
    return softmax(a) if logits else a


def check_same_length(**arrays: np.ndarray) -> int:
    """The common length of ``arrays``; a ShapeError naming them when they differ."""
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ShapeError("lengths differ: " + ", ".join(f"{k}={n}" for k, n in lengths.items()))
    return next(iter(lengths.values()), 0)


def class_names_for(class_names: Sequence[str] | None, *arrays: np.ndarray) -> list[str]:
    """``class_names`` as strings, or ``"0".."C-1"`` with C from the largest class index in ``arrays``."""
    if class_names is not None:
        names = [str(c) for c in class_names]
        top = max((int(a.max()) for a in arrays if a.size), default=-1)
        if top >= len(names):
            raise ShapeError(f"class_names: {len(names)} names but class index {top} occurs")
        return names
    n = max((int(a.max()) + 1 for a in arrays if a.size), default=0)
    return [str(i) for i in range(n)]
