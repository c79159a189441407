from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from viz_helpers import make_history, to_tidy

from kdlab.viz import compare_runs, final_metric_bars, training_curves
from kdlab.viz.theme import BASELINE, SEQUENCE, TEACHER


def _by_panel(fig, panel):
    return [t for t in fig.data if t.meta["panel"] == panel]


@pytest.mark.parametrize("terms", [("ce",), ("ce", "kd"), ("ce", "kd", "feat", "align")])
def test_one_trace_per_loss_term_with_the_input_values(terms):
    h = make_history(terms=terms)
    fig = training_curves(h)
    traces = _by_panel(fig, "loss terms")
    assert [t.name for t in traces] == [f"train/{t}" for t in terms]
    for t in traces:
        assert list(t.x) == [1.0, 2.0, 3.0]
        assert list(t.y) == [row[t.name] for row in h]
    assert len({t.line.color for t in traces}) == len(terms)


def test_panels_hold_the_right_keys_and_values(history):
    fig = training_curves(history, teacher_acc=0.93)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["accuracy", "agreement", "loss", "loss terms", "learning rate", "throughput"]
    acc = {t.name: t for t in _by_panel(fig, "accuracy")}
    assert set(acc) == {"train/acc", "val/acc", "teacher"}
    assert list(acc["val/acc"].y) == [r["val/acc"] for r in history]
    assert list(acc["teacher"].y) == [0.93, 0.93] and list(acc["teacher"].x) == [1.0, 3.0]
    assert acc["teacher"].line.color == TEACHER
    assert [t.name for t in _by_panel(fig, "agreement")] == ["val/agreement"]
    assert list(_by_panel(fig, "learning rate")[0].y) == [r["lr"] for r in history]
    assert list(_by_panel(fig, "throughput")[0].y) == [r["throughput"] for r in history]
    assert {t.name for t in _by_panel(fig, "loss")} == {"train/loss", "val/loss"}


def test_missing_panels_are_left_out_and_tidy_input_draws_the_same():
    h = make_history(agreement=False)
    fig = training_curves(to_tidy(h))
    assert "agreement" not in [a.text for a in fig.layout.annotations]
    ref = training_curves(h)
    assert [(t.name, list(t.y)) for t in fig.data] == [(t.name, list(t.y)) for t in ref.data]


def test_empty_history_gives_a_placeholder():
    fig = training_curves([])
    assert len(fig.data) == 0 and "no metrics" in fig.layout.annotations[0].text


def test_compare_runs_overlays_each_run_with_role_colours():
    runs = {"kd": make_history(epochs=3), "vanilla": to_tidy(make_history(epochs=2)), "teacher": make_history(),
            "no-val": [{"epoch": 1, "train/loss": 1.0}]}
    fig = compare_runs(runs, key="val/acc")
    assert [t.name for t in fig.data] == ["kd", "vanilla", "teacher"]
    assert list(fig.data[1].y) == [r["val/acc"] for r in make_history(epochs=2)]
    assert [t.line.color for t in fig.data] == [SEQUENCE[0], BASELINE, TEACHER]
    assert "no-val" in fig.layout.title.text
    with_teacher = compare_runs(runs, key="val/acc", teacher_acc=0.97)
    ref = with_teacher.data[-1]
    assert ref.name == "teacher" and list(ref.y) == [0.97, 0.97] and list(ref.x) == [1.0, 3.0]


def test_final_metric_bars_mean_and_sample_std_over_seeds():
    table = pd.DataFrame({"method": ["kd"] * 3 + ["vanilla"] * 2 + ["dkd"],
                          "seed": [0, 1, 2, 0, 1, 0], "value": [0.80, 0.90, 0.85, 0.70, 0.74, 0.9]})
    fig = final_metric_bars(table)
    got = {t.name: (t.y[0], t.error_y.array[0], t.customdata[0][0]) for t in fig.data}
    for m, (mean, std, n) in got.items():
        v = table.loc[table.method == m, "value"].to_numpy()
        assert mean == pytest.approx(v.mean(), abs=1e-15)
        assert std == pytest.approx(v.std(ddof=1) if len(v) > 1 else 0.0, abs=1e-15)
        assert n == len(v)
    assert [t.marker.color for t in fig.data] == [SEQUENCE[0], BASELINE, SEQUENCE[1]]


def test_final_metric_bars_grouped_by_dataset():
    table = pd.DataFrame({"group": ["mnist", "mnist", "digits", "digits"], "method": ["kd"] * 4,
                          "seed": [0, 1, 0, 1], "value": [0.9, 0.8, 0.6, 0.7]})
    fig = final_metric_bars(table)
    (bar,) = fig.data
    assert list(bar.x) == ["mnist", "digits"]
    assert np.allclose(bar.y, [0.85, 0.65]) and np.allclose(bar.error_y.array, [np.sqrt(0.005)] * 2)
