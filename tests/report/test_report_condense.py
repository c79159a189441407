"""Condensation runs in HTML reports: grid, snapshot slider, class means, neighbours and accuracy figures."""
from __future__ import annotations

import pytest

from kdlab.jobs.condense import run_condensation
from kdlab.report.condense import condense_section
from kdlab.report.html import run_figures
from kdlab.report.runs import load_run

NET = {"width": 16, "depth": 2}
SPEC = {"name": "dm-report", "task": "condense", "seed": 0, "device": "cpu",
        "data": {"name": "digits", "params": {"n_train": 200}},
        "condense": {"params": {"method": "dm", "ipc": 1, "iterations": 4, "snapshot_every": 2, "batch_real": 16,
                                "model_params": NET},
                     "evaluation": {"epochs": 2, "n_nets": 2, "model_params": {"convnet": NET}}}}


@pytest.fixture(scope="module")
def condense_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("condense-report") / "run"
    run_condensation(SPEC, folder)
    return folder


def test_section_draws_every_figure_from_the_run_folder(condense_dir):
    figs = {kind: fig for kind, _title, fig in condense_section(load_run(condense_dir))}
    assert list(figs) == ["condense-grid", "condense-snapshots", "condense-means", "condense-neighbours",
                          "condense-accuracy"]
    assert [f.name for f in figs["condense-snapshots"].frames] == ["0", "2", "4"]
    assert len(figs["condense-accuracy"].data[0].y) == 1  # one evaluation model
    kinds = [f.id.rsplit("-", 2)[-2] + "-" + f.id.rsplit("-", 1)[-1] for f in run_figures(load_run(condense_dir))]
    assert "condense-grid" in kinds


def test_other_runs_get_no_condense_figures(experiment_dir):
    assert condense_section(load_run(experiment_dir)) == []
