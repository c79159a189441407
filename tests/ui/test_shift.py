"""The Shift component headless: Run studies submits a ``shift`` job (a worker process) whose saved benchmark is
drawn as the targets table, the zoo's cards, every method's accuracy per target and the metrics' Kendall taus; a
new session shows the same job; bad studies are refused before anything runs; the report draws the same figures."""
from __future__ import annotations

import math

import numpy as np
import pytest

from kdlab.jobs.shift import load_shift, save_shift
from kdlab.runs.background import RunHandle
from kdlab.shift.targets import benchmark_target
from kdlab.transfer import WIDE_SOURCES, SourceZoo, rank_sources
from kdlab.ui.shift import Shift

ZOO = {"zoo_width": 4, "zoo_depth": 2, "zoo_epochs": 1, "zoo_n_train": 100}
SOURCES = ["mnist", "mnist_invert", "mnist_parity"]


@pytest.mark.timeout(300)
def test_studies_run_as_a_job_and_are_drawn_from_the_store(store, tmp_path):
    root = str(tmp_path / "zoo")
    comp = Shift(store=store, studies=["benchmark"], targets=["digits_0to4_invert"], scale=0.05, labels_per_class=2,
                 zoo_root=root, sources=SOURCES, **ZOO)
    task = comp.run()
    assert RunHandle(store, task.id).wait(timeout=240) == "completed", task.record.error
    comp.tick()
    assert comp.status.object == f"1 study done: benchmark. (job {task.id})"
    saved = load_shift(store.run_dir(task.id))
    (t,) = saved["studies"]["benchmark"]["targets"]
    assert [c["name"] for c in saved["zoo"]] == SOURCES
    # the job's scores are the plain ranking of the same zoo on the same labelled images
    zoo = SourceZoo(root=root, arch_params={"width": 4, "depth": 2, "norm": "batchnorm"}, epochs=1, n_train=100,
                    sources=[d for d in WIDE_SOURCES if d.name in SOURCES])
    want = rank_sources(zoo, benchmark_target("digits_0to4_invert", 2, 0).labelled)
    got = np.array([[t["scores"][s][m] for m in want.columns] for s in want.index], dtype=float)  # null: NaN
    want = want.where(np.isfinite(want), np.nan)  # -inf (a degenerate LogME) is saved as null too
    np.testing.assert_allclose(got, want.to_numpy(), rtol=1e-6, equal_nan=True)

    panes = {k: p for k, p in comp.job.panes.items() if p.visible}
    assert set(panes) == {"targets", "zoo", "benchmark", "taus"}
    table = panes["targets"].value
    assert list(table["target"]) == ["digits_0to4_invert"] and table.loc[0, "weighted"] == round(
        100 * t["methods"]["weighted"], 1)
    bars = {tr.name: list(tr.y) for tr in panes["benchmark"].object.data}
    assert bars["DistillWeighted"] == pytest.approx([100 * t["methods"]["weighted"]])
    assert bars["FixMatch"] == pytest.approx([100 * t["methods"]["fixmatch"]])
    heat = panes["taus"].object.data[0]
    want_tau = [np.nan if t["taus"][m] is None else t["taus"][m] for m in heat.x]
    np.testing.assert_allclose(np.asarray(heat.z, dtype=float)[0], want_tau, equal_nan=True)

    again = Shift(store=store)  # a new session shows the newest job, its form the job's parameters
    assert again.job.task.id == task.id and again.status.object == comp.status.object
    assert again.job.params() == store.get_run(task.id).spec["params"]

    from kdlab.report import build, run_from_store

    build([run_from_store(store, task.id)], tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert "shift-benchmark" in html and "shift-taus" in html


def test_bad_studies_and_targets_are_refused_before_a_job_starts(store):
    comp = Shift(store=store, studies=["benchmark", "fantastic"])
    assert comp.run() is None
    assert "fantastic" in comp.status.object and "complementary" in comp.status.object
    comp.job.form.studies, comp.job.form.targets = ["benchmark"], ["digits_upside_down"]
    assert comp.run() is None and "digits_rot90" in comp.status.object
    comp.job.form.studies = []
    assert comp.run() is None and "choose at least one" in comp.status.object
    assert store.jobs("shift") == []
    with pytest.raises(KeyError, match="studies"):
        Shift(store=store, study="benchmark")


def test_saved_studies_round_trip_with_non_finite_numbers_as_null(tmp_path):
    save_shift(tmp_path, [{"name": "a"}], {"benchmark": {"summary": {"tau/logme": math.nan, "x": np.float64(1.5)},
                                                        "table": [(1, 2)]}})
    data = load_shift(tmp_path)
    assert data == {"zoo": [{"name": "a"}], "studies": {"benchmark": {"summary": {"tau/logme": None, "x": 1.5},
                                                                     "table": [[1, 2]]}}}
    (tmp_path / "artifacts" / "shift.json").write_text("{broken")
    assert load_shift(tmp_path) is None
