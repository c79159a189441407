"""The evaluation protocol: real training that beats chance by far, soft CE = CE on one-hot, summary maths."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from kdlab.condense import EvalConfig, condense, evaluate_sets, summarize
from kdlab.condense.evaluate import CONVNET_PARAMS, soft_cross_entropy
from kdlab.errors import ConfigError
from tests.condense.conftest import SMALL_NET


def test_defaults_are_the_fields_protocol():
    c = EvalConfig()
    assert (c.lr, c.momentum, c.weight_decay, c.models) == (0.01, 0.9, 5e-4, ("convnet",))
    assert c.params_for("convnet") == CONVNET_PARAMS == {"width": 128, "depth": 3, "norm": "instancenorm",
                                                         "pool": "avgpool"}


def test_networks_trained_on_ten_real_images_per_class_beat_chance(digits_train, digits_test):
    s = condense(digits_train, method="random", ipc=10)
    rows = evaluate_sets({"r": s}, digits_test, EvalConfig(models=("convnet", "mlp"), epochs=30, n_nets=1,
                                                           model_params={"convnet": SMALL_NET}))
    assert list(rows.columns) == ["set", "model", "net", "acc"] and len(rows) == 2
    assert rows["acc"].min() > 0.6  # chance is 0.1
    again = evaluate_sets({"r": s}, digits_test, EvalConfig(models=("convnet", "mlp"), epochs=30, n_nets=1,
                                                            model_params={"convnet": SMALL_NET}))
    pd.testing.assert_frame_equal(rows, again)  # seeded


def test_soft_cross_entropy_matches_cross_entropy_on_one_hot():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(5, 4, generator=g), torch.tensor([0, 3, 1, 1, 2])
    assert math.isclose(float(soft_cross_entropy(logits, F.one_hot(y, 4).float())),
                        float(F.cross_entropy(logits, y)), rel_tol=1e-6)


def test_summary_is_mean_and_population_std():
    rows = pd.DataFrame({"set": ["a", "a", "b"], "model": ["m"] * 3, "net": [0, 1, 0], "acc": [0.5, 0.7, 0.9]})
    s = summarize(rows)
    assert s.loc["m", "mean"] == pytest.approx(0.7) and s.loc["m", "std"] == pytest.approx(math.sqrt(0.08 / 3))


def test_mismatched_test_data_and_bad_config_fail(digits_train, rgb_train):
    s = condense(rgb_train, method="random", ipc=1)
    with pytest.raises(Exception, match="test data"):
        evaluate_sets(s, digits_train, epochs=1)
    with pytest.raises(ConfigError, match="epochs"):
        EvalConfig(epochs=0)
