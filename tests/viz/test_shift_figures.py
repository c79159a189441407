"""Figures of the shift studies: bars carry the saved accuracies (in %), the tau heat map the saved taus with null
as a gap, every study present gets its figure and absent ones none, bad rows are refused, names are escaped."""
from __future__ import annotations

import numpy as np
import pytest

from kdlab.errors import ConfigError
from kdlab.viz.shift import benchmark_bars, grouped_bars, study_figures, tau_heatmap

TARGETS = [{"target": "a<b>", "methods": {"scratch": 0.5, "weighted": 0.75}, "taus": {"logme": 0.5, "nce": None}},
           {"target": "t2", "methods": {"scratch": 0.25, "weighted": 1.0}, "taus": {"logme": -1.0, "nce": 0.0}}]


def test_benchmark_bars_are_the_accuracies_in_percent_per_method_and_target():
    fig = benchmark_bars(TARGETS)
    bars = {t.name: list(t.y) for t in fig.data}
    assert bars == {"scratch": [50.0, 25.0], "DistillWeighted": [75.0, 100.0]}
    assert list(fig.data[0].x) == ["a&lt;b&gt;", "t2"]  # user strings escaped


def test_tau_heatmap_holds_the_taus_with_gaps_for_missing():
    hm = tau_heatmap(TARGETS).data[0]
    z = np.asarray(hm.z, dtype=float)
    np.testing.assert_array_equal(z, [[0.5, np.nan], [-1.0, 0.0]])
    assert list(hm.x) == ["logme", "nce"] and hm.zmin == -1 and hm.zmax == 1 and hm.zmid == 0


def test_every_saved_study_gets_its_figures():
    names = ["m1", "m2"]
    saved = {"studies": {
        "benchmark": {"labels_per_class": 5, "targets": TARGETS},
        "complementary": {"names": names, "gains": [[None, 1.0], [-2.0, None]],
                          "complementary": [[None, 5.0], [3.0, None]]},
        "source_free": {"curves": {"digits": {"GLC": [0.5, 0.6], "LPLD": [0.5, 0.55]}},
                        "curve_metric": {"digits": "accuracy"}},
        "meta_dmoe": {"table": [{"held_out": "mnist", "method": "uniform mixture", "accuracy": 0.4},
                                {"held_out": "mnist", "method": "Meta-DMoE (TTA)", "accuracy": 0.5}]},
        "kd3": {"table": [{"method": "kd", "test set": "clean", "accuracy": 0.6}]},
        "hard": {"table": [{"method": "hard", "test set": "blur", "accuracy": 0.7}]}}}
    figs = study_figures(saved)
    assert set(figs) == {"benchmark", "taus", "pair_gains", "complementary", "adaptation", "meta_dmoe", "kd3", "hard"}
    assert [list(t.y) for t in figs["meta_dmoe"].data] == [[40.0], [50.0]]
    assert list(figs["hard"].data[0].y) == [70.0]
    z = np.asarray(figs["pair_gains"].data[0].z, dtype=float)
    assert z[0, 1] == 1.0 and z[1, 0] == -2.0 and np.isnan(z[0, 0])
    assert study_figures({"studies": {"kd3": saved["studies"]["kd3"]}}).keys() == {"kd3"}
    assert study_figures({"studies": {}}) == {}


def test_bad_rows_are_refused():
    with pytest.raises(ConfigError, match="'test set'"):
        grouped_bars([{"method": "kd", "accuracy": 0.5}], "test set", "method", "accuracy", "t")
    with pytest.raises(ConfigError, match="benchmark target"):
        tau_heatmap([])
