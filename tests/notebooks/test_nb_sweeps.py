"""notebooks/09_sweeps.ipynb executed headless (nbclient): a 4-trial sweep of a tiny MLP on digits runs as one
``sweep`` job through the widget, which draws its trials live and then its figures and best spec; the advice
and the report come from the same store."""
from __future__ import annotations

import pytest
from nb_helpers import run_notebook

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_sweeps_notebook_runs(tmp_path):
    report = tmp_path / "report.html"
    res = run_notebook(
        "09_sweeps.ipynb", tmp_path,
        "{'job': [ui.task.kind, ui.task.status], 'trials': len(result.trials), 'counts': result.counts(), "
        "'figures': sorted(figs), 'widget_outputs': len(ui.out.outputs), 'best_lr': best['optim']['lr'], "
        "'best_params': result.best.params, 'advice': sorted(advice['method']), "
        "'params': {k: ui.task.record.spec['params'][k] for k in ('trials', 'sampler', 'pruner', 'seed')}}",
        timeout=150, trials=4, epochs=2, sampler="tpe", pruner="median", seed=0,
        store_path=str(tmp_path / "store"), report_path=str(report))
    assert res["job"] == ["sweep", "completed"] and res["trials"] == 4, res
    assert res["params"] == {"trials": 4, "sampler": "tpe", "pruner": "median", "seed": 0}
    done = res["counts"]["complete"] + res["counts"]["pruned"]
    assert done == 4 and res["counts"]["complete"] >= 2, res
    assert {"trials", "curves", "parallel"} <= set(res["figures"]), res  # importances need 4 distinct values
    # the widget: the counts line, the trials table, the figures, the best spec
    assert res["widget_outputs"] == 2 + len(res["figures"]) + 1, res
    assert res["best_lr"] == res["best_params"]["optim.lr"]
    assert set(res["advice"]) <= {"kd", "dkd", "dist"} and res["advice"], res
    text = report.read_text()
    assert "sweep-trials" in text and "sweep-best-spec" in text and "sweep-trials-table" in text
