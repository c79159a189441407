"""Frequency figures: traces carry exactly the analysis numbers, roles keep their colours, names are escaped."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdlab.analysis.fourier_heatmap import FourierHeatmap
from kdlab.errors import ConfigError
from kdlab.viz.frequency import band_accuracy_curves, feature_spectra, fourier_heatmaps, graph_energy_bars
from kdlab.viz.theme import BASELINE, STUDENT, TEACHER


@pytest.fixture
def bands() -> pd.DataFrame:
    rows = []
    for m, base in (("teacher", 0.9), ("student", 0.8), ("vanilla", 0.7)):
        rows.append({"model": m, "filter": "none", "cutoff": np.nan, "acc": base, "agreement": 1.0})
        for c in (0.25, 0.5, 1.0):
            rows.append({"model": m, "filter": "low", "cutoff": c, "acc": base * c, "agreement": c})
            rows.append({"model": m, "filter": "high", "cutoff": c, "acc": base * (1 - c / 2), "agreement": 1 - c})
    return pd.DataFrame(rows)


def test_band_curves_plot_the_numbers_in_role_colours(bands):
    fig = band_accuracy_curves(bands)
    lines = {(t.name, t.xaxis): t for t in fig.data}
    assert len(fig.data) == 6
    t_low = lines[("teacher", "x")]
    assert list(t_low.x) == [0.25, 0.5, 1.0] and np.allclose(t_low.y, [0.225, 0.45, 0.9])
    assert np.allclose(lines[("student", "x2")].y, [0.7, 0.6, 0.4])
    assert t_low.line.color == TEACHER and lines[("student", "x")].line.color == STUDENT
    assert lines[("vanilla", "x")].line.color == BASELINE
    assert {s.y0 for s in fig.layout.shapes} == {0.9, 0.8, 0.7}  # unfiltered accuracy lines
    agree = band_accuracy_curves(bands, metric="agreement")
    assert np.allclose(agree.data[0].y, [0.25, 0.5, 1.0])
    with pytest.raises(ConfigError, match="metric"):
        band_accuracy_curves(bands, metric="f1")


def test_fourier_heatmaps_side_by_side_on_one_scale():
    a = FourierHeatmap(np.full((4, 4), 0.2), np.arange(16.0).reshape(4, 4), 4.0, 10, 0.05)
    b = FourierHeatmap(np.full((4, 4), 0.6), np.ones((4, 4)), 4.0, 10, 0.1)
    fig = fourier_heatmaps({"teacher": a, "<b>kd</b>": b})
    assert [t.zmax for t in fig.data] == [0.6, 0.6] and np.allclose(fig.data[1].z, 0.6)
    assert list(fig.data[0].x) == [-2, -1, 0, 1]
    assert "&lt;b&gt;kd&lt;/b&gt;" in fig.layout.annotations[1].text
    change = fourier_heatmaps({"teacher": a}, kind="change")
    assert np.isclose(np.max(change.data[0].z), 1.0) and np.isclose(change.data[0].z[1][0], 4 / 15)
    with pytest.raises(ConfigError):
        fourier_heatmaps({})


def test_feature_spectra_and_graph_energy_bars():
    spec = pd.DataFrame({"model": ["teacher"] * 4 + ["student"] * 2, "layer": ["a", "a", "b", "b", "c", "c"],
                         "radius": [0.2, 0.6] * 3, "energy": [0.7, 0.3, 0.4, 0.6, 0.5, 0.5]})
    fig = feature_spectra(spec)
    assert len(fig.data) == 3 and np.allclose(fig.data[1].y, [0.4, 0.6]) and fig.data[2].line.color == STUDENT
    table = pd.DataFrame({"model": ["GCN teacher", "MLP", "FF-G2M-MLP"], "high_fraction": [0.1, 0.3, 0.2],
                          "high_fraction_std": [0.01, 0.02, 0.03], "hf_similarity": [1.0, 0.4, 0.6]})
    bars = graph_energy_bars(table)
    assert np.allclose(bars.data[0].y, [0.1, 0.3, 0.2]) and np.allclose(bars.data[0].error_y.array, [0.01, 0.02, 0.03])
    assert bars.data[0].marker.color[0] == TEACHER and np.allclose(bars.data[1].y, [1.0, 0.4, 0.6])
    with pytest.raises(ConfigError, match="high_fraction"):
        graph_energy_bars(pd.DataFrame({"model": ["a"]}))
