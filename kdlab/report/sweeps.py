"""Report section "sweeps": a ``sweep`` run's trials (objective per trial with the best so far, learning curves,
parallel coordinates, parameter importances), its best spec as YAML and the trial table, from
``<run folder>/artifacts/sweep.json`` (``kdlab.sweeps.result`` owns the format: ``save_sweep``/``read_sweep``)."""
from __future__ import annotations

import plotly.graph_objects as go

from kdlab.report.html import register_report_section
from kdlab.report.runs import RunData
from kdlab.sweeps.result import read_sweep

TITLES = {"trials": "objective per trial", "curves": "learning curves of every trial",
          "parallel": "parameters of the complete trials", "importances": "parameter importances"}


@register_report_section("sweeps")
def sweeps_section(run: RunData) -> list[tuple[str, str, go.Figure]]:
    """The sweep's figures, best spec and trial table (none when ``run`` is not a sweep)."""
    result = read_sweep(run.folder) if run.folder is not None else None
    if result is None:
        return []
    from kdlab.viz.sweeps import spec_card, sweep_figures, trials_table
    from kdlab.viz.theme import plotly_text

    out = [(f"sweep-{key}", TITLES[key], fig) for key, fig in sweep_figures(result).items()]
    best = result.best
    if best is not None:
        title = f"Best spec: trial #{best.number}, {plotly_text(result.metric)} {best.value:.4g}"
        out.append(("sweep-best-spec", f"best spec (trial #{best.number})", spec_card(result.best_spec(), title)))
    if result.trials:
        out.append(("sweep-trials-table", "trials", trials_table(result)))
    return out
