"""Representation figures: the data they show equals the results they were given."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdlab.analysis.agreement import agreement
from kdlab.errors import ConfigError
from kdlab.viz.representations import (
    agreement_panel,
    cka_heatmap,
    cka_over_epochs,
    embedding_scatter,
    student_ranking,
)
from kdlab.viz.theme import STUDENT, TEACHER


@pytest.fixture
def grid():
    return pd.DataFrame([[0.9, 0.2, 0.1], [0.3, 0.8, 0.4]], index=["t.0", "t.<b>1</b>"], columns=["s.0", "s.1", "s.2"])


def test_heatmap_values_labels_and_matched_diagonal(grid):
    fig = cka_heatmap(grid, title="T vs S")
    hm = fig.data[0]
    assert np.allclose(np.asarray(hm.z, dtype=float), grid.values)
    assert list(hm.y) == ["t.0", "t.&lt;b&gt;1&lt;/b&gt;"]  # user strings are shown literally
    assert (hm.zmin, hm.zmax) == (0, 1)
    rects = [(s.x0, s.y0) for s in fig.layout.shapes]
    assert rects == [(0.5, -0.5), (1.5, 0.5)]  # deepest with deepest: (t.0, s.1), (t.1, s.2)
    assert "0.300" in fig.layout.title.text  # mean of 0.2 and 0.4
    with pytest.raises(ConfigError):
        cka_heatmap(pd.DataFrame())


def test_cka_over_epochs_default_pairs():
    rows = [{"epoch": e, "teacher_layer": a, "student_layer": b, "cka": 0.1 * e + (a == b)}
            for e in range(3) for a in ("x", "y") for b in ("x", "y")]
    fig = cka_over_epochs(pd.DataFrame(rows))
    assert [t.name for t in fig.data] == ["x ~ x", "y ~ y"]
    assert np.allclose(fig.data[0].y, [1.0, 1.1, 1.2])
    with pytest.raises(ConfigError, match="recorded"):
        cka_over_epochs(pd.DataFrame(rows), pairs=[("x", "z")])


def test_embedding_scatter_by_class_and_by_agreement():
    rng = np.random.default_rng(0)
    t, s, y = rng.normal(size=(30, 2)), rng.normal(size=(30, 2)), np.repeat([0, 1, 2], 10)
    fig = embedding_scatter(t, s, y, class_names=["a", "b", "c"])
    assert len(fig.data) == 6 and sum(len(d.x) for d in fig.data) == 60
    assert np.allclose(fig.data[0].x, t[:10, 0]) and np.allclose(fig.data[3].y, s[:10, 1])
    agree = np.arange(30) % 3 != 0
    fig2 = embedding_scatter(t, s, y, color_by="agreement", agree=agree)
    assert [d.name for d in fig2.data[:2]] == ["agree", "disagree"] and len(fig2.data[1].x) == 10
    with pytest.raises(ConfigError):
        embedding_scatter(t, s, y, color_by="agreement")


def test_agreement_panel_and_ranking():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(100, 3))
    a = agreement(z, z + rng.normal(size=(100, 3)), rng.integers(0, 3, 100))
    fig = agreement_panel(a)
    assert np.allclose(fig.data[0].y, a.per_class["teacher_acc"]) and fig.data[0].marker.color == TEACHER
    assert fig.data[1].marker.color == STUDENT
    assert np.allclose(fig.data[3].y, [a.teacher_ece, a.student_ece])
    assert f"{a.top1:.3f}" in fig.layout.title.text
    df = pd.DataFrame({"candidate": ["p", "q"], "relation": [0.1, 0.3], "cka": [0.5, 0.2], "std": [0.01, 0.02]})
    df.attrs["metric"] = "relation"
    fig = student_ranking(df, accuracy=pd.Series({"p": 0.9, "q": 0.8}))
    assert list(fig.data[0].y) == [0.1, 0.3] and list(fig.data[1].y) == [0.9, 0.8]
