"""notebooks/03_source_selection.ipynb executed headless with a tiny zoo (nbclient): the zoo is ranked by a
``transfer_rank`` job through the widget, DistillNearest/DistillWeighted and a scratch baseline run as background
runs of a temporary store, the report is written."""
from __future__ import annotations

import pytest
from nb_helpers import run_notebook

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SOURCES = ["mnist", "mnist_invert", "mnist_parity"]


def test_source_selection_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path / "cache"))  # the tiny zoo and teacher heads stay in the test
    report = tmp_path / "report.html"
    res = run_notebook(
        "03_source_selection.ipynb", tmp_path,
        "{'sources': list(scores.index), 'metrics': list(scores.columns), 'labelled': len(target.labelled), "
        "'job': [ui.task.kind, ui.task.status, ui.task.record.summary['sources']], "
        "'job_params': {k: ui.task.record.spec['params'][k] for k in ('sources', 'zoo_width', 'zoo_depth', "
        "'zoo_epochs', 'zoo_n_train', 'labels_per_class', 'metric')}, 'zoo': [str(zoo.root.parent), zoo.names()], "
        "'saved_weights': saved['weights'], 'weights': {k: float(v) for k, v in weights.items()}, "
        "'realised': sorted(realised), 'status': sorted(status.values()), "
        "'acc': {m: a[0] for m, a in accuracy.items()}, 'nearest': spec['teacher']['name'], "
        "'best': scores[metric].idxmax(), 'widget_figures': len(ui.out.outputs)}",
        timeout=300, target_name="digits", labels_per_class=2, size=28, seed=0, sources=SOURCES, zoo_width=4,
        zoo_depth=3, zoo_epochs=1, zoo_n_train=300, metric="linear_probe", temperature=0.5, epochs=1,
        single_epochs=1, store_path=str(tmp_path / "store"), report_path=str(report))
    assert res["sources"] == SOURCES and len(res["metrics"]) == 8 and res["labelled"] == 20, res
    assert res["job"] == ["transfer_rank", "completed", 3.0], res
    assert res["job_params"] == {"sources": SOURCES, "zoo_width": 4, "zoo_depth": 3, "zoo_epochs": 1,
                                 "zoo_n_train": 300, "labels_per_class": 2, "metric": "linear_probe"}, res
    # the kernel's zoo is the job's (same setting, same cache folder under the test's KDLAB_CACHE)
    assert res["zoo"] == [str(tmp_path / "cache" / "zoo"), SOURCES], res
    assert res["saved_weights"] == pytest.approx(res["weights"]) and sum(res["weights"].values()) == pytest.approx(1)
    assert res["realised"] == sorted(SOURCES), res
    assert res["status"] == ["completed"] * 3, res
    assert set(res["acc"]) == {"scratch", "nearest", "weighted"} and all(0 <= a <= 1 for a in res["acc"].values())
    assert res["nearest"] == f"zoo:{res['best']}"  # DistillNearest distils from the top-ranked source
    assert res["widget_figures"] == 2  # the widget drew the score matrix and the weights
    text = report.read_text()
    assert "distill-weighted-digits" in text and "source-scores" in text and "method-accuracy" in text
