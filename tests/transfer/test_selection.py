"""rank_sources and source_weights on the tiny zoo."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kdlab import create
from kdlab.errors import ConfigError
from kdlab.transfer import METRICS, best_source, rank_sources, source_weights
from kdlab.transfer.selection import source_features


@pytest.fixture(scope="module")
def scores(zoo, target):
    torch.manual_seed(0)
    zoo.add("untrained", create("convnet", 10, (1, 28, 28), width=4, depth=2), save=False)
    return rank_sources(zoo, target.labelled)


def test_every_metric_for_every_source(scores, zoo):
    assert list(scores.columns) == list(METRICS)
    assert set(scores.index) == set(zoo.names())
    assert np.isfinite(scores.to_numpy()).all()
    assert scores.attrs["seconds"] >= scores.attrs["feature_seconds"] > 0


def test_trained_digit_source_predictions_beat_untrained_network(scores):
    # a random ConvNet's features can already separate digits; its head's predictions cannot
    for m in ("leep", "nce"):
        assert scores.loc["mnist", m] > scores.loc["untrained", m], m


def test_features_are_reused(zoo, target, scores):
    feats = source_features(zoo, target.labelled, ["mnist", "mnist_parity"])
    again = rank_sources(zoo, target.labelled, metrics=["logme", "leep"], features=feats)
    assert again.loc["mnist", "logme"] == pytest.approx(scores.loc["mnist", "logme"], rel=1e-9)
    assert list(again.index) == ["mnist", "mnist_parity"]


def test_source_weights_softmax_of_standardised_scores():
    s = pd.Series({"a": 3.0, "b": 1.0, "c": 2.0})
    w = source_weights(s, temperature=1.0)
    z = (s - s.mean()) / s.std(ddof=0)
    assert w.to_numpy() == pytest.approx(np.exp(z) / np.exp(z).sum())
    assert w.sum() == pytest.approx(1.0) and w["a"] > w["c"] > w["b"]
    assert source_weights(s, 1e-3)["a"] == pytest.approx(1.0)  # cold: the nearest source only
    assert source_weights(s, 1e3).to_numpy() == pytest.approx(np.full(3, 1 / 3), abs=1e-3)
    assert source_weights(s * 100 + 7, 1.0).to_numpy() == pytest.approx(w.to_numpy())  # scale-free
    assert best_source(s) == "a"


def test_a_source_whose_metric_failed_gets_no_weight_and_the_others_share_it():
    """LogME is -inf or NaN on a few separable labelled images (its noise precision diverges): that source gets
    weight 0 and the finite ones are weighted as if it were not there; with no finite score, an error."""
    s = pd.Series({"a": 3.0, "b": 1.0, "c": 2.0})
    for bad in (-np.inf, np.nan, np.inf):
        w = source_weights(pd.concat([s, pd.Series({"d": bad})]), temperature=1.0)
        assert list(w.index) == ["a", "b", "c", "d"] and w["d"] == 0.0
        assert w[["a", "b", "c"]].to_numpy() == pytest.approx(source_weights(s, 1.0).to_numpy())
    with pytest.raises(ConfigError, match="finite score"):
        source_weights(pd.Series({"a": np.nan, "b": -np.inf}))


def test_bad_inputs(scores):
    with pytest.raises(ConfigError, match="metric"):
        source_weights(scores, 1.0, metric="nope")
    with pytest.raises(ConfigError, match="temperature"):
        source_weights(scores["logme"], 0.0)
