"""Figures of a sweep: pruned trials are grey everywhere, the best-so-far line is the running best of the complete
trials, parallel coordinates have one axis per parameter every drawn trial has and carry the frame's values,
importances and advice are sorted, the best spec and trial table show what the sweep saved, user strings are
escaped."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sweeps_helpers import make_sweep

from kdlab.errors import ConfigError
from kdlab.sweeps.result import SweepResult, Trial
from kdlab.viz.sweeps import (
    STATE_COLORS,
    advice_bars,
    importance_bars,
    learning_curves,
    parallel_coordinates,
    short_names,
    spec_card,
    sweep_figures,
    trials_over_time,
    trials_table,
)
from kdlab.viz.theme import BASELINE, STUDENT


def test_pruned_trials_are_grey_and_every_state_has_its_colour():
    r = make_sweep()
    pruned = [t.number for t in r.trials if t.state == "pruned"]
    fig = trials_over_time(r)
    by_state = {tr.meta["state"]: tr for tr in fig.data}
    assert set(by_state) == {"complete", "pruned", "failed", "running", "best"}
    assert list(by_state["pruned"].x) == pruned and by_state["pruned"].marker.color == BASELINE
    assert all(tr.marker.color != BASELINE for s, tr in by_state.items() if s not in ("pruned", "best"))
    # a pruned trial is drawn at the best point of its (short) curve
    assert list(by_state["pruned"].y) == [max(v for _, v in r.trials[n].curve) for n in pruned]
    curves = learning_curves(r)
    grey = [tr for tr in curves.data if tr.line.color == BASELINE]
    assert sorted(tr.meta["trial"] for tr in grey) == pruned
    assert all(tr.line.width == 1.0 and len(tr.x) == 1 for tr in grey)  # thin, their one epoch
    (best,) = [tr for tr in curves.data if tr.line.color == STUDENT]
    assert best.meta["trial"] == r.best.number and best.line.width > max(tr.line.width for tr in grey)
    assert list(best.y) == [v for _, v in r.best.curve]
    (failed,) = [tr for tr in curves.data if tr.meta["state"] == "failed"]
    assert failed.line.color == STATE_COLORS["failed"] and failed.line.dash == "dash"
    assert sum(tr.showlegend for tr in curves.data) == len({tr.legendgroup for tr in curves.data})  # one per group


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_best_so_far_is_the_running_best_of_the_complete_trials(direction):
    r = make_sweep(seed=3)
    r.direction = direction
    (line,) = [tr for tr in trials_over_time(r).data if tr.meta["state"] == "best"]
    done = sorted((t.number, t.value) for t in r.trials if t.state == "complete")
    acc = (np.maximum if direction == "maximize" else np.minimum).accumulate([v for _, v in done])
    assert list(line.x[:-1]) == [n for n, _ in done] and np.allclose(line.y[:-1], acc)
    steps = np.diff(line.y)
    assert (steps >= 0).all() if direction == "maximize" else (steps <= 0).all()
    assert line.x[-1] == r.trials[-1].number and line.y[-1] == line.y[-2]  # held to the last trial
    assert line.line.shape == "hv"


def test_parallel_coordinates_have_one_axis_per_shared_parameter_with_the_frames_values():
    r = make_sweep()
    frame = r.frame()
    done = frame[frame["state"] == "complete"]
    pc = parallel_coordinates(r).data[0]
    # per-method parameters (temperature, beta, tau, weight) are not drawn by every trial: no axis
    assert pc.meta["keys"] == ["method.name", "optim.lr", "student.params.width"]
    assert [d.label for d in pc.dimensions] == ["method", "lr (log)", "width", "val/acc"]
    assert pc.meta["numbers"] == list(done["number"])
    method, lr, width, value = pc.dimensions
    assert [method.ticktext[int(v)] for v in method.values] == list(done["method.name"])
    assert list(method.ticktext) == ["kd", "dkd", "dist", "nd"]  # the space's order
    np.testing.assert_allclose(10 ** np.asarray(lr.values), done["optim.lr"])  # log axis, values as ticks
    assert list(width.values) == list(done["student.params.width"]) and list(width.tickvals) == [16, 32, 64]
    assert list(value.values) == list(done["value"]) and list(pc.line.color) == list(done["value"])
    dkd = parallel_coordinates(r, method="dkd").data[0]
    assert dkd.meta["keys"] == ["optim.lr", "student.params.width", "method.params.temperature",
                                "method.params.beta"]
    assert dkd.meta["numbers"] == [t.number for t in r.trials if t.state == "complete"
                                   and t.params["method.name"] == "dkd"]
    assert list(dkd.dimensions[3].values) == [r.trials[n].params["method.params.beta"] for n in dkd.meta["numbers"]]
    with pytest.raises(ConfigError, match="no complete trial of vanilla"):
        parallel_coordinates(r, method="vanilla")


def test_importances_are_sorted_largest_first_and_advice_keeps_the_advisers_order():
    bars = importance_bars({"optim.lr": 0.2, "method.name": 0.5, "student.params.width": 0.3}).data[0]
    assert list(bars.y) == ["method", "width", "lr"] and list(bars.x) == [50.0, 30.0, 20.0]
    with pytest.raises(ConfigError, match="importances"):
        importance_bars({})
    advice = pd.DataFrame({"method": ["dkd", "kd", "<b>nd</b>"], "predicted": [0.91, 0.88, math.nan],
                           "trials": [12, 1, 0], "best_seen": [0.92, 0.88, math.nan],
                           "best_params": [{"method.params.beta": 4.0}, {}, {}], "sweeps": [["s1"], ["s1"], []],
                           "note": ["", "", "never tried"]})
    fig = advice_bars(advice)
    assert list(fig.data[0].y) == ["dkd (12 trials)", "kd (1 trial)", "&lt;b&gt;nd&lt;/b&gt; (0 trials)"]
    assert list(fig.data[0].text) == ["0.91", "0.88", ""] and fig.data[0].marker.color[0] == STUDENT
    ranked = advice_bars(advice.assign(standing=[1.0, 0.25, math.nan])).data[0]  # advise's ranking score, when given
    assert list(ranked.text) == ["0.91 · standing 1.00", "0.88 · standing 0.25", ""]
    assert list(fig.data[1].x[:2]) == [0.92, 0.88]  # best seen
    with pytest.raises(ConfigError, match="missing columns \\['note'\\]"):
        advice_bars(advice.drop(columns=["note"]))


def test_sweep_figures_draw_what_the_sweep_has_and_escape_names():
    r = make_sweep()
    assert set(sweep_figures(r)) == {"trials", "curves", "parallel", "importances"}
    empty = SweepResult("s", "optuna", "tpe", "median", "val/acc", "maximize", 4, {}, {"method": {"name": "kd"}})
    assert sweep_figures(empty) == {}
    empty.trials = [Trial(0, {"method.name": "<i>x</i>"}, state="running", curve=[[1, 0.5]])]
    figs = sweep_figures(empty)
    assert set(figs) == {"trials", "curves"}  # no complete trial: no parallel coordinates, no importances
    assert figs["curves"].data[0].name == "&lt;i&gt;x&lt;/i&gt;"
    assert short_names(["teacher.params.width", "student.params.width", "optim.lr"]) == {
        "teacher.params.width": "teacher.params.width", "student.params.width": "student.params.width",
        "optim.lr": "lr"}


def test_trial_table_and_best_spec_show_the_saved_trials():
    r = make_sweep(n=12)
    table = trials_table(r).data[0]
    cells = table.cells.values
    assert list(cells[0]) == list(range(12)) and list(cells[1]) == [t.state for t in r.trials]
    fonts, fills = table.cells.font.color[0], table.cells.fill.color[0]
    assert [f == BASELINE for f in fonts] == [t.state == "pruned" for t in r.trials]
    assert fills[r.best.number].startswith("rgba(230,97,1")  # the best row in the student's orange
    card = spec_card(r.best_spec()).data[0].cells.values[0][0]
    assert "method:<br>\u00a0\u00a0name:\u00a0" + r.best.params["method.name"] in card  # indentation kept
