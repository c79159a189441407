from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.io as pio
import pytest
from viz_helpers import make_history

from kdlab.errors import ConfigError
from kdlab.viz import (
    calibration,
    compare_runs,
    confusion_matrix,
    final_metric_bars,
    per_class_gap,
    training_curves,
)
from kdlab.viz.theme import BASELINE, ROLE_COLORS, SEQUENCE, STUDENT, TEACHER, role_color, role_of, run_colors

_Y = np.array([0, 1, 2, 1, 0, 2])
_L = np.eye(3)[[0, 1, 1, 1, 2, 2]] * 3


@pytest.mark.parametrize("build", [
    lambda: training_curves(make_history()),
    lambda: compare_runs({"a": make_history(), "b": make_history()}),
    lambda: final_metric_bars(pd.DataFrame({"method": ["kd", "kd"], "seed": [0, 1], "value": [0.5, 0.6]})),
    lambda: per_class_gap(_L, _Y, _Y),
    lambda: confusion_matrix(_L, _Y),
    lambda: calibration(_L, _Y),
], ids=["curves", "compare", "bars", "gap", "confusion", "calibration"])
def test_every_builder_applies_the_kdlab_template(build):
    assert "kdlab" in pio.templates
    fig = build()
    assert fig.layout.template == pio.templates["kdlab"]
    assert list(fig.layout.template.layout.colorway) == list(SEQUENCE)


def test_role_colours_are_fixed_and_distinct_from_the_sequence():
    assert role_color("teacher") == TEACHER and role_color("student") == STUDENT
    assert role_color("vanilla") == role_color("baseline") == BASELINE
    assert len(set(ROLE_COLORS.values())) == 3 and not set(ROLE_COLORS.values()) & set(SEQUENCE)
    with pytest.raises(ConfigError, match="role"):
        role_color("coach")


def test_run_colours_by_role_then_sequence():
    colors = run_colors(["kd", "vanilla", "teacher", "dkd", "Vanilla seed 1", "vanillaish"])
    assert colors == {"kd": SEQUENCE[0], "vanilla": BASELINE, "teacher": TEACHER, "dkd": SEQUENCE[1],
                      "Vanilla seed 1": BASELINE, "vanillaish": SEQUENCE[2]}
    assert run_colors(["x"], roles={"x": "teacher"}) == {"x": TEACHER}
    assert role_of("student/val") == "student" and role_of("kd") is None


def test_user_names_are_shown_literally_by_plotly():
    from kdlab.viz.theme import plotly_text

    assert plotly_text("<b>x</b> & y") == "&lt;b&gt;x&lt;/b&gt; &amp; y"
    name = "<script>alert(1)</script>"
    fig = compare_runs({name: make_history(), "kd": make_history()})
    assert fig.data[0].name == plotly_text(name) and fig.data[0].meta["run"] == name
    gap = per_class_gap(_L, _Y, _Y, class_names=["<i>a</i>", "b", "c"])
    assert gap.data[0].x[0] == "&lt;i&gt;a&lt;/i&gt;"


@pytest.mark.parametrize("rows,cols,titles", [(1, 1, ["a"]), (2, 2, ["a", "b", "c"]), (3, 2, list("abcdef"))])
def test_grid_layout_is_make_subplots_layout_and_a_fresh_copy(rows, cols, titles):
    from plotly.subplots import make_subplots

    from kdlab.viz.theme import axis_ref, grid_layout

    want = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.09,
                         vertical_spacing=0.12).layout.to_plotly_json()
    want.pop("template")
    got = grid_layout(rows, cols, titles)
    assert got == want
    got[axis_ref(rows * cols, "xaxis")]["title"] = "changed"  # callers edit it: the cached grid must not change
    assert grid_layout(rows, cols, titles) == want
    assert axis_ref(1) == "x" and axis_ref(3, "y") == "y3" and axis_ref(2, "yaxis") == "yaxis2"
