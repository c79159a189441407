"""The shift benchmark's study on a tiny zoo: every method's accuracy and every metric's Kendall tau per target,
the single-source accuracies are the teachers' test accuracies, the summary is the table's average; a target with
fewer classes than the sources distils through new heads; an empty unlabelled pool is refused for the methods
that need one."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from kdlab.errors import ConfigError
from kdlab.shift.benchmark import kendall_taus, study_benchmark, target_study
from kdlab.shift.targets import benchmark_target
from kdlab.transfer import METHODS, METRICS, fit_teachers, run_method
from kdlab.transfer.teachers import accuracy

pytestmark = pytest.mark.timeout(300)


def test_kendall_taus_against_scipy_and_its_limits():
    scores = pd.DataFrame({"up": [1.0, 2.0, 3.0, 4.0], "down": [4.0, 3.0, 2.0, 1.0], "flat": [1.0] * 4,
                           "mixed": [2.0, 1.0, 4.0, 3.0]}, index=list("abcd"))
    acc = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}
    taus = kendall_taus(scores, acc)
    assert taus["up"] == pytest.approx(1.0) and taus["down"] == pytest.approx(-1.0) and math.isnan(taus["flat"])
    assert taus["mixed"] == pytest.approx(kendalltau([2, 1, 4, 3], [1, 2, 3, 4]).statistic)
    shuffled = {"d": 0.4, "a": 0.1, "c": 0.3, "b": 0.2}  # matched by source name, not by order
    assert kendall_taus(scores, shuffled) == pytest.approx(taus, nan_ok=True)


@pytest.fixture(scope="module")
def study(tiny_zoo):
    return study_benchmark(tiny_zoo, seed=0, scale=0.05, targets=["digits_parity_rot45"], labels_per_class=3)


def test_study_reports_every_method_and_metric_and_its_summary_is_the_tables_mean(study, tiny_zoo):
    (t,) = study["targets"]
    assert set(t["methods"]) == set(METHODS) and set(t["taus"]) == set(METRICS)
    assert all(0.0 <= a <= 1.0 for a in t["methods"].values())
    assert set(t["single"]) == set(tiny_zoo.names()) and t["classes"] == 2 and t["labelled"] == 6
    assert t["spread"] == pytest.approx(max(t["single"].values()) - min(t["single"].values()))
    assert sum(t["weights"].values()) == pytest.approx(1.0)
    assert t["picked"]["nearest"] == [max(t["scores"], key=lambda s: t["scores"][s]["linear_probe"])]
    row = study["table"][0]
    assert row == {"target": "digits_parity_rot45", **t["methods"]}
    for m in METHODS:
        assert study["summary"][f"mean/{m}"] == pytest.approx(t["methods"][m])
    assert study["summary"]["weighted_minus_nearest"] == pytest.approx(t["methods"]["weighted"] -
                                                                     t["methods"]["nearest"])
    assert study["summary"]["weighted_minus_fixmatch"] == pytest.approx(t["methods"]["weighted"] -
                                                                      t["methods"]["fixmatch"])
    assert study["epochs"] == 1


def test_single_source_accuracy_is_each_teachers_test_accuracy_and_taus_follow(study, tiny_zoo):
    """A 10-class source teaches a 2-class target through a new head fitted on its labelled images."""
    (t,) = study["targets"]
    target = benchmark_target("digits_parity_rot45", 3, 0)
    teachers = fit_teachers(tiny_zoo, target)
    for name, teacher in teachers.items():
        assert teacher.head.out_features == 2
        assert t["single"][name] == pytest.approx(accuracy(teacher, target.test))
    scores = pd.DataFrame.from_dict(t["scores"], orient="index")
    assert t["taus"] == pytest.approx(kendall_taus(scores, t["single"]), nan_ok=True)


def test_empty_unlabelled_pool_is_refused_for_the_methods_that_need_it(tiny_zoo):
    target = benchmark_target("digits_invert", 2, 0)
    target.unlabelled = target.unlabelled.subset(np.arange(0))
    for m in ("fixmatch", "uniform", "nearest", "weighted", "single:mnist"):
        with pytest.raises(ConfigError, match="unlabelled pool is empty"):
            run_method(m, tiny_zoo, target, None, epochs=1)
    r = run_method("scratch", tiny_zoo, target, None, epochs=1)  # labels only: fine
    assert 0 <= r["test_acc"] <= 1
    with pytest.raises(ConfigError, match="unlabelled pool is empty"):
        target_study(tiny_zoo, target, ["scratch", "weighted"], epochs=1)


def test_bad_methods_and_targets_are_refused(tiny_zoo):
    with pytest.raises(ConfigError, match="valid: scratch, finetune"):
        study_benchmark(tiny_zoo, targets=["digits"], methods=["scratch", "distill"])
    with pytest.raises(KeyError, match="digits_invert"):
        study_benchmark(tiny_zoo, targets=["nope"])


def test_fine_tuning_and_zoo_model_names_reach_the_wide_zoos_sources(tmp_path):
    """Sources only the wide zoo defines (e.g. a two-class task) are buildable by name, so fine-tuning the best of
    them works like any built-in source."""
    from kdlab.transfer import WIDE_SOURCES, SourceZoo, rank_sources

    defs = [d for d in WIDE_SOURCES if d.name == "mnist_0or1"]
    zoo = SourceZoo(root=tmp_path, arch_params={"width": 4, "depth": 2, "norm": "batchnorm"}, epochs=1, n_train=100,
                    sources=defs).build()
    target = benchmark_target("digits_invert", 2, 0)
    scores = rank_sources(zoo, target.labelled)
    r = run_method("finetune", zoo, target, scores, epochs=1)
    assert r["sources"] == ["mnist_0or1"] and 0 <= r["test_acc"] <= 1
