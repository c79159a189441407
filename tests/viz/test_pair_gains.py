"""Pair-gain heatmap: rows are teachers and columns students, the value of every pair in its cell, the diagonal
blank, a diverging scale centred on 0 for gains and a sequential one from 0 for complementary knowledge."""
from __future__ import annotations

import math

import numpy as np
import pytest

from kdlab.errors import ConfigError
from kdlab.viz.pair_gains import pair_gain_heatmap
from kdlab.viz.theme import DIVERGING, SEQUENTIAL

NAMES = ["a", "<b>", "c"]
GAINS = [[None, 6.6, -1.3], [-4.9, None, 12.0], [0.04, -0.06, None]]  # rows: teacher, columns: student


def _scale(hm) -> list[list]:
    return [[float(p), c] for p, c in hm.colorscale]


def test_gain_matrix_rows_are_teachers_with_signed_points_and_a_blank_diagonal():
    hm = pair_gain_heatmap(NAMES, GAINS).data[0]
    z = np.array(hm.z, dtype=float)
    assert z[0, 1] == 6.6 and z[1, 0] == -4.9 and z[1, 2] == 12.0  # not transposed
    assert np.isnan(np.diag(z)).all()
    assert [list(r) for r in hm.text] == [["", "+6.6", "-1.3"], ["-4.9", "", "+12.0"], ["+0.0", "-0.1", ""]]
    assert list(hm.y) == list(hm.x) == ["a", "&lt;b&gt;", "c"]  # names escaped
    assert _scale(hm) == DIVERGING and hm.zmid == 0 and hm.zmin == -12.0 and hm.zmax == 12.0  # red loss, blue gain
    assert "teacher %{y}" in hm.hovertemplate and "student %{x}" in hm.hovertemplate and hm.hoverongaps is False


def test_figure_axes_name_teacher_and_student():
    fig = pair_gain_heatmap(NAMES, np.array(GAINS, dtype=float), title="T")
    assert fig.layout.yaxis.title.text == "teacher" and fig.layout.yaxis.autorange == "reversed"  # row 0 on top
    assert "student" in fig.layout.xaxis.title.text
    assert fig.layout.title.text == "T"


def test_diagonal_values_given_are_still_blank():
    m = np.arange(9.0).reshape(3, 3) - 4
    hm = pair_gain_heatmap(NAMES, m).data[0]
    assert np.isnan(np.diag(np.array(hm.z, dtype=float))).all() and [hm.text[i][i] for i in range(3)] == [""] * 3
    assert hm.zmax == 3.0  # the colour range ignores the diagonal (-4 and 4 are on it, 3 is the largest off it)


def test_complementary_kind_is_sequential_from_zero():
    comp = [[math.nan, 20.0, 5.5], [7.0, math.nan, 0.0], [1.0, 2.0, math.nan]]
    hm = pair_gain_heatmap(NAMES, comp, kind="complementary").data[0]
    assert _scale(hm) == SEQUENTIAL and hm.zmin == 0 and hm.zmax == 20.0
    assert hm.text[0][1] == "20.0" and hm.text[0][0] == ""
    assert "%" in hm.hovertemplate


@pytest.mark.parametrize("names, values, kind, match", [
    (NAMES, GAINS, "loss", "kind: 'loss'"),
    (NAMES, [[None, 1.0], [1.0, None]], "gain", "3 x 3"),
    (["a"], [[None]], "gain", "at least 2"),
    (NAMES, [[None, None, 1.0], [1.0, None, 1.0], [1.0, 1.0, None]], "gain", "finite"),
    (NAMES, [[None, "x", 1.0], [1.0, None, 1.0], [1.0, 1.0, None]], "gain", "numbers"),
])
def test_bad_input_is_refused(names, values, kind, match):
    with pytest.raises(ConfigError, match=match):
        pair_gain_heatmap(names, values, kind=kind)
