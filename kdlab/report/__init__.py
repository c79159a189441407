"""Self-contained HTML reports of runs (one file, opens offline): ``build(runs, path)``.

Runs come from run folders, result dicts or the run store (``run_from_store``); see ``kdlab.report.runs``.
"""
from __future__ import annotations

from kdlab.report.html import (
    PLOTLY_CONFIG,
    REPORT_SECTIONS,
    ReportFigure,
    ReportFigures,
    build,
    register_report_section,
    report_figures,
    summary_table,
)
from kdlab.report.predictions import compute_predictions
from kdlab.report.runs import (
    PREDICTIONS_FILE,
    Predictions,
    RunData,
    load_predictions,
    load_run,
    load_runs,
    run_from_store,
    save_predictions,
)

__all__ = [
    "PLOTLY_CONFIG", "PREDICTIONS_FILE", "REPORT_SECTIONS", "Predictions", "ReportFigure", "ReportFigures",
    "RunData", "build", "compute_predictions", "load_predictions", "load_run", "load_runs",
    "register_report_section", "report_figures", "run_from_store", "save_predictions", "summary_table",
]
