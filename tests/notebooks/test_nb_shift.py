"""notebooks/08_shift.ipynb executed headless with a tiny zoo (nbclient): the studies run as one ``shift`` job
through the widget, their tables and figures are drawn from the store, and the report is written."""
from __future__ import annotations

import pytest
from nb_helpers import run_notebook

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_shift_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path / "cache"))  # the tiny zoo stays in the test
    report = tmp_path / "report.html"
    res = run_notebook(
        "08_shift.ipynb", tmp_path,
        "{'job': [ui.task.kind, ui.task.status], 'studies': sorted(saved['studies']), 'figures': sorted(figs), "
        "'tables': sorted(tables), 'widget_outputs': len(ui.out.outputs), 'target': target.name, "
        "'targets': list(tables['targets']['target']), 'params': ui.task.record.spec['params']['studies']}",
        timeout=300, studies=["benchmark"], seed=0, scale=0.05, targets=["digits_invert"], labels_per_class=2,
        sources=["mnist", "mnist_invert", "mnist_0to4"],
        zoo_width=4, zoo_depth=2, zoo_epochs=1, zoo_n_train=100, store_path=str(tmp_path / "store"),
        report_path=str(report))
    assert res["job"] == ["shift", "completed"] and res["studies"] == ["benchmark"], res
    assert res["figures"] == ["benchmark", "taus"] and res["tables"] == ["targets", "zoo"], res
    assert res["widget_outputs"] == 4 and res["targets"] == ["digits_invert"], res  # 2 tables + 2 figures
    assert res["target"] == "digits_invert" and res["params"] == ["benchmark"]
    text = report.read_text()
    assert "shift-benchmark" in text and "shift-taus" in text
