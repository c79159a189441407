"""The Source selection component headless: the background ranking equals the plain ``rank_sources`` call, the
weights figure follows metric and temperature, launching needs a ranking, failures are reported escaped."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdlab.transfer import SourceDef, SourceZoo, make_target, rank_sources, source_weights
from kdlab.ui.source_selection import SourceSelection


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> SourceZoo:
    sources = (SourceDef("mnist"), SourceDef("mnist_invert", (("invert", 1.0),)))
    return SourceZoo(root=tmp_path_factory.mktemp("zoo"), arch_params={"width": 4, "depth": 2, "norm": "batchnorm"},
                     epochs=1, n_train=200, sources=sources).build()


def test_background_ranking_matches_the_plain_call(zoo, store):
    comp = SourceSelection(zoo=zoo, store=store, labels_per_class=3, metric="logme", temperature=0.5)
    assert comp.launch() == [] and "Rank the sources first" in comp.status.object
    comp.rank()
    target, scores = comp.wait(timeout=120)
    assert len(target.labelled) == 30 and "Ranked 2 sources" in comp.status.object
    want = rank_sources(zoo, make_target("digits", 3, 0, size=28).labelled)
    pd.testing.assert_frame_equal(scores, want, rtol=1e-9)
    assert [p.css_classes for p in comp.figures.objects] == [["kdlab-ss-scores"], ["kdlab-ss-weights"]]
    for temperature in (0.5, 100.0):  # the weights figure is source_weights at the chosen metric and temperature
        comp.temperature = temperature
        bars = comp.figures_of()["weights"].data[0]
        w = source_weights(scores, temperature, "logme").sort_values(ascending=False)
        assert list(bars.x) == list(w.index) and np.allclose(bars.y, w.to_numpy())
    assert abs(bars.y[0] - 0.5) < 0.01  # a high temperature spreads the weight evenly


def test_failed_ranking_is_reported_escaped(zoo, store):
    comp = SourceSelection(zoo=zoo, store=store, target="no<b>such")
    comp.rank()
    with pytest.raises(RuntimeError, match="ranking failed"):
        comp.wait(timeout=120)
    assert "UnknownNameError" in comp.status.object and "no&lt;b&gt;such" in comp.status.object
    assert comp.result is None and comp.figures.objects == []
