"""Files a run leaves in its folder besides checkpoints: ``results.json`` and ``predictions.npz``.

Written by the worker side (``run_experiment``), read by the report and UI layers; numpy only.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.npz"


def as_array(x: Any) -> np.ndarray:
    """A numpy array from a tensor (any device) or array-like."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def save_predictions(folder: str | os.PathLike[str], labels: Any, student: Any, teacher: Any = None,
                     class_names: Sequence[str] | None = None, split: str = "test") -> Path:
    """Write ``folder/predictions.npz`` (labels, student and optional teacher logits, class names) in the
    format ``load_run`` picks up. Logits are stored as float32."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"labels": as_array(labels).astype(np.int64),
                                     "student": _logits32(as_array(student)), "split": np.asarray(split)}
    if teacher is not None:
        arrays["teacher"] = _logits32(as_array(teacher))
    if class_names is not None:
        arrays["class_names"] = np.asarray([str(c) for c in class_names], dtype=str)
    path = folder / PREDICTIONS_FILE
    tmp = folder / (PREDICTIONS_FILE + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path


def _logits32(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) if a.ndim == 2 else a.astype(np.int64)


