"""The "source selection" report section reads a run's saved selection artifact (and nothing otherwise)."""
from __future__ import annotations

import shutil

import pandas as pd

from kdlab.jobs.transfer_rank import load_selection, save_selection
from kdlab.report import build
from kdlab.report.runs import load_run
from kdlab.report.transfer import transfer_section


def test_section_from_saved_selection(tmp_path, tiny_run_dir):
    folder = tmp_path / "run"
    shutil.copytree(tiny_run_dir, folder)
    assert transfer_section(load_run(folder)) == []
    scores = pd.DataFrame({"logme": [0.4, 0.2], "leep": [-1.0, -2.0]}, index=["mnist", "mnist_parity"])
    save_selection(folder, scores, weights=pd.Series({"mnist": 0.8, "mnist_parity": 0.2}),  # as source_weights returns
                   realised={"mnist": 0.9, "mnist_parity": 0.7}, methods={"scratch": [0.6, 0.7]}, metric="logme")
    back = load_selection(folder)
    assert back["scores"].loc["mnist", "logme"] == 0.4 and back["weights"]["mnist"] == 0.8
    kinds = [k for k, _t, _f in transfer_section(load_run(folder))]
    assert kinds == ["source-scores", "source-weights", "source-ranking", "method-accuracy"]
    html = build([folder, tiny_run_dir])
    assert html.count('id="kdlab-run0-source-scores"') == 1 and 'id="kdlab-run1-source-scores"' not in html
