"""Report section "diffusion": the views of a ``diffusion`` run.

The job (``kdlab.jobs.diffusion``) saves the quality of the teacher and the student at each number of steps, their
samples, the sampling speed and a summary (method, paper, simplification) under its run folder's ``artifacts/``;
read through the job's reader, they become the method card, the quality table, quality against the number of
function evaluations, the sample grids and the speed of the student at one step against the teacher at its most,
with the loss terms when the run's metrics are in the run data. A run without them adds nothing. Every string from
the run (method, citation, data, samplers) is escaped by the builders.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from kdlab.jobs.diffusion import QUALITY_FILE, load_diffusion_artifacts
from kdlab.report.html import register_report_section
from kdlab.report.runs import RunData


def diffusion_section(run: RunData) -> list[tuple[str, str, go.Figure]]:
    """``(kind, title, figure)`` for each diffusion view in the run's folder."""
    from kdlab.viz import diffusion as viz

    folder = run.folder
    if folder is None or not (folder / "artifacts" / QUALITY_FILE).is_file():
        return []
    art = load_diffusion_artifacts(folder)
    out: list[tuple[str, str, go.Figure]] = []
    if art.summary.get("method"):
        out.append(("diffusion-method", "Method, paper and kdlab's simplification", viz.method_card(art.summary)))
    if art.quality is not None and len(art.quality):
        out.append(("diffusion-quality-table", "Sample quality: teacher and student at their steps",
                    viz.quality_table(art.quality)))
        out.append(("diffusion-quality", "Sample quality against function evaluations per sample",
                    viz.quality_vs_nfe(art.quality)))
    if viz.model_keys(art.samples):
        out.append(("diffusion-samples", "Samples by number of sampling steps", viz.sample_grid(art.samples)))
    if art.neighbours and "neighbours" in art.neighbours:
        out.append(("diffusion-neighbours", "Nearest training images of student samples (memorisation check)",
                    viz.neighbours_figure(art.neighbours)))
    h = run.history
    if isinstance(h, pd.DataFrame) and {"key", "value", "step"} <= set(h.columns) and \
            h["key"].astype(str).str.startswith("loss/").any():
        out.append(("diffusion-curves", "Loss terms and quality at snapshots", viz.diffusion_curves(h)))
    if art.summary.get("samples_per_second"):
        out.append(("diffusion-speed", "Sampling speed: student against teacher", viz.speed_bars(art.summary)))
    return out


register_report_section("diffusion", diffusion_section)
