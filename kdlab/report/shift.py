"""Report section "shift": the figures of a ``shift`` job's studies (accuracy per benchmark target, the metrics'
Kendall taus, the pair-gain heat map, adaptation curves, Meta-DMoE / KD3 / HARD bars) from
``<run folder>/artifacts/shift.json`` (``kdlab.jobs.shift`` owns the format: ``save_shift``/``load_shift``)."""
from __future__ import annotations

from typing import Any

from kdlab.jobs.shift import load_shift
from kdlab.report.html import register_report_section
from kdlab.report.runs import RunData

TITLES = {"benchmark": "accuracy per target", "taus": "metric rankings (Kendall τ)", "pair_gains": "pair gains",
          "complementary": "complementary knowledge", "adaptation": "source-free adaptation", "meta_dmoe": "Meta-DMoE",
          "kd3": "KD3", "hard": "HARD"}


@register_report_section("shift")
def shift_section(run: RunData) -> list[tuple[str, str, Any]]:
    """Every figure of the studies ``run`` saved (none when it is not a ``shift`` job)."""
    data = load_shift(run.folder) if run.folder is not None else None
    if data is None:
        return []
    from kdlab.viz.shift import study_figures

    return [(f"shift-{key}", TITLES.get(key, key), fig) for key, fig in study_figures(data).items()]
