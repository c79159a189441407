"""Report section "source selection": the score matrix, source weights, ranking vs realised accuracy and
method accuracies of a run, from ``<run folder>/artifacts/source_selection.json`` (``kdlab.jobs.transfer_rank``
owns the format: ``save_selection``/``load_selection``)."""
from __future__ import annotations

from typing import Any

from kdlab.jobs.transfer_rank import load_selection
from kdlab.report.html import register_report_section
from kdlab.report.runs import RunData


@register_report_section("source selection")
def transfer_section(run: RunData) -> list[tuple[str, str, Any]]:
    """Score matrix, weights, ranking-vs-accuracy scatter and method accuracies of ``run`` (when saved)."""
    if run.folder is None:
        return []
    data = load_selection(run.folder)
    if data is None or data["scores"].empty:
        return []
    from kdlab.viz.theme import plotly_text
    from kdlab.viz.transfer import method_accuracy, ranking_scatter, score_matrix, weight_bars

    name = plotly_text(run.name)
    out: list[tuple[str, str, Any]] = [("source-scores", "source scores",
                                        score_matrix(data["scores"], f"{name}: source scores by metric"))]
    if data["weights"]:
        out.append(("source-weights", "source weights", weight_bars(data["weights"], f"{name}: source weights")))
    metric = data.get("metric") or data["scores"].columns[0]
    if len(data["realised"]) >= 2 and metric in data["scores"].columns:
        out.append(("source-ranking", "ranking vs realised accuracy",
                    ranking_scatter(data["scores"], data["realised"], metric)))
    if data["methods"]:
        out.append(("method-accuracy", "methods", method_accuracy(data["methods"], f"{name}: accuracy by method")))
    return out
