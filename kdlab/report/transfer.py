"""Report section "source selection": the score matrix, source weights, ranking vs realised accuracy and
method accuracies of a run, from ``<run folder>/artifacts/source_selection.json`` (``save_selection``)."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kdlab.report.html import register_report_section
from kdlab.report.runs import RunData

SELECTION_FILE = "source_selection.json"


def selection_path(folder: str | Path) -> Path:
    return Path(folder) / "artifacts" / SELECTION_FILE


def save_selection(folder: str | Path, scores: pd.DataFrame, weights: Mapping[str, float] | None = None,
                   realised: Mapping[str, float] | None = None, methods: Mapping[str, Sequence[float]] | None = None,
                   metric: str | None = None) -> Path:
    """Write a run's source-selection results (atomically) where the report section finds them."""
    path = selection_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    def plain(values: Mapping[str, Any] | None) -> dict[str, Any]:  # dict or Series (e.g. source_weights)
        return {} if values is None else {str(k): v for k, v in dict(values).items()}

    data = {"scores": {str(s): {str(m): float(v) for m, v in row.items()} for s, row in scores.iterrows()},
            "weights": {k: float(v) for k, v in plain(weights).items()},
            "realised": {k: float(v) for k, v in plain(realised).items()},
            "methods": {k: [float(a) for a in v] for k, v in plain(methods).items()}, "metric": metric}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    return path


def load_selection(folder: str | Path) -> dict[str, Any] | None:
    """What ``save_selection`` wrote (scores as a DataFrame), or None when the run has none or it is unreadable."""
    path = selection_path(folder)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        data["scores"] = pd.DataFrame.from_dict(data["scores"], orient="index")
    except (OSError, ValueError, KeyError):
        return None
    return data


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
