"""Language-model figures: the token view wraps, colours by KL and escapes every token; bits-per-byte bars carry the
evaluation's numbers in role colours; the DDK mixture stacks to 1; the loss curves read the store's tidy metrics."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.io as pio
import pytest

from kdlab.errors import ConfigError
from kdlab.viz.text import (
    bpb_bars,
    gap_closed,
    lm_curves,
    mixture_area,
    samples_table,
    token_view,
    visible,
    wrap_tokens,
)
from kdlab.viz.theme import BASELINE, STUDENT, TEACHER

NASTY = ["<script>", "alert(1)", "</script>", " &amp;", " \"q\"", " 'x'", "\n", "\tind", "ok"]


def tokens(strings=NASTY) -> pd.DataFrame:
    n = len(strings)
    return pd.DataFrame({"position": np.arange(1, n + 1), "token": strings, "kl": np.linspace(0.0, 2.0, n),
                         "student_logp": -np.arange(n, dtype=float), "teacher_logp": -np.arange(n) / 2.0,
                         "student_top": ["'<b>' 0.50  '&' 0.20"] * n, "teacher_top": ["'<i>' 0.90"] * n})


def test_wrapping_and_visible_whitespace():
    assert visible(" a\tb\n") == "·a→b↵" and visible("") == "∅"
    places = wrap_tokens(["abcd", "efgh", "ij\n", "k", "x" * 20], columns=10)
    assert places == [(0, 0, 4), (0, 4, 4), (1, 0, 3), (2, 0, 1), (3, 0, 10)]  # newline ends a line; cut to 10
    with pytest.raises(ConfigError, match="columns"):
        wrap_tokens(["a"], columns=3)


def test_token_view_colours_by_kl_and_escapes_every_string():
    df = tokens()
    fig = token_view(df, columns=12)
    (bar,) = fig.data
    assert np.allclose(bar.marker.color, df["kl"]) and bar.marker.cmin == 0.0
    assert bar.marker.colorbar.title.text == "KL, nats"
    assert bar.text[0] == "&lt;script&gt;" and bar.text[3] == "·&amp;amp;" and bar.text[6] == "↵"
    assert bar.customdata[0][0] == "'&lt;script&gt;'" and bar.customdata[0][4] == "'&lt;b&gt;' 0.50  '&amp;' 0.20"
    assert bar.customdata[2][2] == -2.0 and bar.customdata[2][3] == -1.0
    assert list(bar.y) == [0, 1, 2, 3, 3, 4, 4, 5, 5]  # wrapped at 12 characters; the newline token ends its line
    assert list(bar.base) == [0, 0, 0, 0, 6, 0, 4, 0, 4] and list(bar.x) == [8, 8, 9, 6, 4, 4, 1, 4, 2]
    page = pio.to_html(fig, include_plotlyjs=False)
    assert "<script>alert" not in page and "</script>\"" not in page
    assert token_view(df, kl_max=1.0).data[0].marker.cmax == 1.0
    long = token_view(tokens(["a"] * 600), max_tokens=512)
    assert len(long.data[0].x) == 512 and "first 512 of 600" in long.layout.title.text
    with pytest.raises(ConfigError, match="kl"):
        token_view(df.drop(columns=["kl"]))


@pytest.fixture
def table() -> pd.DataFrame:
    rows = []
    for m, base in (("teacher", 1.0), ("student", 1.5), ("no-KD student", 2.0)):
        for i, d in enumerate(["json", "<email>", "all"]):
            rows.append({"model": m, "domain": d, "bpb": base + i / 10, "ppl": 3.0, "tokens": 10, "bytes": 30,
                         "agreement": np.nan if m == "teacher" else 0.5, "kl": np.nan if m == "teacher" else 0.1})
    return pd.DataFrame(rows)


def test_bpb_bars_carry_the_numbers_in_role_colours(table):
    fig = bpb_bars(table.iloc[::-1])  # any row order: teacher, student, no-KD student; domains then "all"
    assert [t.name for t in fig.data] == ["teacher", "student", "no-KD student"]
    assert [t.marker.color for t in fig.data] == [TEACHER, STUDENT, BASELINE]
    assert list(fig.data[0].x) == ["&lt;email&gt;", "json", "all"] and len(fig.layout.shapes) == 1  # all: set apart
    student = fig.data[1]
    assert dict(zip(student.x, student.y, strict=True)) == {"json": 1.5, "&lt;email&gt;": 1.6, "all": 1.7}
    assert gap_closed(table)["all"] == pytest.approx(0.5)


def test_mixture_stacks_and_curves_read_tidy_metrics():
    mix = pd.DataFrame({"step": [0, 0, 5, 5], "domain": ["a", "b", "a", "b"], "weight": [0.5, 0.5, 0.7, 0.3]})
    fig = mixture_area(mix)
    assert [t.stackgroup for t in fig.data] == ["mix", "mix"] and list(fig.data[0].y) == [0.5, 0.7]
    rows = [{"step": s, "kind": "step", "key": k, "value": v} for s in (1, 2) for k, v in
            (("loss/ce", 3.0 / s), ("loss/kd", 1.0 / s), ("lr", 0.1), ("method/taid_t", 0.4 + s / 10))]
    rows.append({"step": 2, "kind": "epoch", "key": "val/bpb", "value": 4.5})
    fig = lm_curves(pd.DataFrame(rows))
    assert [t.name for t in fig.data] == ["loss/ce", "loss/kd", "val/bpb", "method/taid_t"]
    assert list(fig.data[1].y) == [1.0, 0.5] and [a.text for a in fig.layout.annotations] == \
        ["loss terms", "validation bits per byte", "TAID interpolation t"]
    empty = lm_curves(pd.DataFrame(columns=["step", "key", "value"]))
    assert "no metrics yet" in empty.layout.annotations[0].text
    t = samples_table([{"prompt": "<b>p</b>\nx", "teacher": "&t", "student": "s"}])
    assert t.data[0].cells.values[0][0] == "&lt;b&gt;p&lt;/b&gt;↵<br>x" and t.data[0].cells.values[1][0] == "&amp;t"
