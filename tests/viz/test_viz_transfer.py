"""Source-selection figures: what they draw matches the numbers given."""
from __future__ import annotations

import pandas as pd
import pytest
from scipy.stats import kendalltau

from kdlab.errors import ConfigError
from kdlab.viz.theme import BASELINE, STUDENT
from kdlab.viz.transfer import kendall_bars, method_accuracy, ranking_scatter, score_matrix, weight_bars

SCORES = pd.DataFrame({"logme": [0.5, 0.1, 0.3], "leep": [-1.0, -2.0, -1.5]}, index=["a", "<b>", "c"])


def test_score_matrix_colours_by_rank_and_escapes_names():
    fig = score_matrix(SCORES)
    hm = fig.data[0]
    assert list(hm.y) == ["a", "&lt;b&gt;", "c"]
    assert hm.z[0][0] == 1.0 and hm.z[1][0] == pytest.approx(1 / 3)  # best source of each metric = 1
    assert hm.text[0][1] == "-1"


def test_ranking_scatter_reports_kendall_tau():
    realised = {"a": 0.9, "<b>": 0.5, "c": 0.7}
    fig = ranking_scatter(SCORES, realised, "logme")
    tau = kendalltau([0.5, 0.1, 0.3], [0.9, 0.5, 0.7]).statistic
    assert f"τ = {tau:.2f}" in fig.layout.title.text and tau == pytest.approx(1.0)
    assert list(fig.data[0].y) == pytest.approx([90, 50, 70])
    with pytest.raises(ConfigError, match="metric"):
        ranking_scatter(SCORES, realised, "nope")


def test_weights_sorted_and_method_bars_mean_std():
    fig = weight_bars({"a": 0.2, "b": 0.7, "c": 0.1})
    assert list(fig.data[0].x) == ["b", "a", "c"]
    fig = method_accuracy({"scratch": [0.8, 0.9], "weighted": [0.95, 0.97]})
    bar = fig.data[0]
    assert list(bar.y) == pytest.approx([85.0, 96.0])
    assert bar.error_y.array[0] == pytest.approx(7.0711, rel=1e-3)
    assert list(bar.marker.color) == [BASELINE, STUDENT]
    df = pd.DataFrame({"method": ["nearest", "nearest"], "test_acc": [0.5, 0.7]})
    assert method_accuracy(df).data[0].y[0] == pytest.approx(60.0)
    assert list(kendall_bars({"logme": 0.5, "leep": -0.2}).data[0].y) == [0.5, -0.2]
    with pytest.raises(ConfigError):
        method_accuracy({})
