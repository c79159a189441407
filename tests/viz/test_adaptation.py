"""Adaptation-curve figure: what it draws matches the curves given."""
from __future__ import annotations

import pytest

from kdlab.errors import ConfigError
from kdlab.viz.adaptation import adaptation_curves
from kdlab.viz.theme import BASELINE

CURVES = {"digits": {"GLC": [0.4, 0.5, 0.6], "LPLD": [0.4, 0.45, 0.5]},
          "<open>": {"GLC": [0.3, 0.35], "LPLD": [0.3, 0.2]}}


def test_one_line_per_method_and_target_with_the_source_dashed():
    fig = adaptation_curves(CURVES, metric={"<open>": "H-score"}, title="t")
    lines = {(t.meta["target"], t.meta["method"]): t for t in fig.data}
    assert set(lines) == {(t, m) for t in CURVES for m in ("source", "GLC", "LPLD")}
    glc = lines[("digits", "GLC")]
    assert list(glc.x) == [0, 1, 2] and list(glc.y) == pytest.approx([40, 50, 60])
    src = lines[("<open>", "source")]
    assert list(src.y) == pytest.approx([30, 30]) and src.line.dash == "dash" and src.line.color == BASELINE
    assert lines[("digits", "GLC")].line.color == lines[("<open>", "GLC")].line.color
    assert lines[("digits", "GLC")].line.color != lines[("digits", "LPLD")].line.color
    assert lines[("<open>", "GLC")].xaxis == "x2"
    assert fig.layout.yaxis2.title.text == "H-score (%)" and fig.layout.yaxis.title.text == "accuracy (%)"
    assert [a.text for a in fig.layout.annotations] == ["digits", "&lt;open&gt;"]
    assert sum(bool(t.showlegend) for t in fig.data) == 3  # each name once in the legend


def test_bad_curves_are_refused():
    with pytest.raises(ConfigError, match="curves"):
        adaptation_curves({})
    with pytest.raises(ConfigError, match="curves"):
        adaptation_curves({"a": {"GLC": [0.1, float("nan")]}})
