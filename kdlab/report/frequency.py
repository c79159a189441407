"""Report section "frequency": the figures of a run's frequency analysis, read from its folder.

``kdlab.analysis.frequency.FrequencyArtifacts.save(run_folder)`` (the Frequency page and notebook call it)
writes band curves, Fourier heat maps, feature spectra and the GNN-to-MLP graph table; each one present
becomes a figure here. A run without them adds nothing.
"""
from __future__ import annotations

import plotly.graph_objects as go

from kdlab.analysis.frequency import FrequencyArtifacts
from kdlab.report.html import register_report_section
from kdlab.report.runs import RunData


def frequency_section(run: RunData) -> list[tuple[str, str, go.Figure]]:
    """``(kind, title, figure)`` for each frequency artifact in ``run.folder``."""
    from kdlab.viz.frequency import band_accuracy_curves, feature_spectra, fourier_heatmaps, graph_energy_bars

    if run.folder is None:
        return []
    art = FrequencyArtifacts.load(run.folder)
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
