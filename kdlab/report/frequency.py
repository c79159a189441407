"""Report section "frequency": the figures of a run's frequency analysis.

A ``frequency`` job of the run (``kdlab.jobs.frequency``) saves band curves, Fourier heat maps and feature
spectra; a ``graph_kd`` job the GNN-to-MLP graph table. Each one present becomes a figure here (read from the
newest completed job of the run, or from the folder of a job itself); a run without them adds nothing.
"""
from __future__ import annotations

import plotly.graph_objects as go

from kdlab.jobs.frequency import load
from kdlab.report.html import register_report_section
from kdlab.report.runs import RunData


def frequency_section(run: RunData) -> list[tuple[str, str, go.Figure]]:
    """``(kind, title, figure)`` for each frequency artifact in ``run.folder``."""
    from kdlab.viz.frequency import band_accuracy_curves, feature_spectra, fourier_heatmaps, graph_energy_bars

    folder = run.artifact_folder("frequency")
    if folder is None:
        return []
    art = load(folder)
    out: list[tuple[str, str, go.Figure]] = []
    if art.bands is not None and len(art.bands):
        out.append(("frequency-bands", "Accuracy on low- and high-pass filtered inputs",
                    band_accuracy_curves(art.bands)))
        if art.bands["agreement"].notna().any():
            out.append(("frequency-agreement", "Agreement with the teacher on filtered inputs",
                        band_accuracy_curves(art.bands, metric="agreement")))
    if art.heatmaps:
        out.append(("fourier-heatmap", "Fourier heat maps (error rate)", fourier_heatmaps(art.heatmaps)))
    if art.spectra is not None and len(art.spectra):
        out.append(("feature-spectra", "Feature-map spectral energy", feature_spectra(art.spectra)))
    if art.graph is not None and len(art.graph):
        out.append(("graph-energy", "Graph spectral energy (GNN teacher vs MLP students)",
                    graph_energy_bars(art.graph)))
    return out


register_report_section("frequency", frequency_section)
