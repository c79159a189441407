"""Plotly figure builders: pure functions, data in, ``go.Figure`` out, one look (the ``"kdlab"`` template).

The same figure serves the notebook, the dashboard and the HTML report. Builders accept plain data:
histories (list of per-epoch dicts), tidy metrics DataFrames from the run store, numpy arrays or tensors.
"""
from __future__ import annotations

from kdlab.viz.calibration import ReliabilityBins, calibration, expected_calibration_error, reliability_bins
from kdlab.viz.classes import (
    confusion_counts,
    confusion_matrix,
    normalize_rows,
    per_class_accuracy,
    per_class_gap,
)
from kdlab.viz.curves import compare_runs, final_metric_bars, summarize_seeds, training_curves
from kdlab.viz.data import as_history, loss_terms
from kdlab.viz.theme import ROLE_COLORS, SEQUENCE, TEMPLATE_NAME, apply_theme, role_color, role_of, run_colors

__all__ = [
    "ROLE_COLORS", "SEQUENCE", "TEMPLATE_NAME", "ReliabilityBins", "apply_theme", "as_history", "calibration",
    "compare_runs", "confusion_counts", "confusion_matrix", "expected_calibration_error", "final_metric_bars",
    "loss_terms", "normalize_rows", "per_class_accuracy", "per_class_gap", "reliability_bins", "role_color",
    "role_of", "run_colors", "summarize_seeds", "training_curves",
]
