"""notebooks/01_quickstart.ipynb executed headless with small parameters (nbclient): a KD run and a vanilla run
launched into a temporary store, followed live, compared and reported."""
from __future__ import annotations

import pytest
from nb_helpers import run_notebook

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_quickstart_runs_and_kernel_stays_free(tmp_path):
    report = tmp_path / "report.html"
    res = run_notebook(
        "01_quickstart.ipynb", tmp_path,
        "{'status': status_after_launch, 'dt': seconds_after_launch, 'kd': kd.status, 'vanilla': vanilla.status, "
        "'updates': monitor.updates, 'rows': monitor.poller.points, 'kinds': [kd.kind, vanilla.kind], "
        "'epochs': [len(kd.history()), len(vanilla.history())], 'names': sorted(results), "
        "'acc': [r['student']['test/acc'] for r in results.values()], "
        "'teacher': [sorted(k for k in kd.record.summary if k.startswith('teacher/')), "
        "sorted(k for k in vanilla.record.summary if k.startswith('teacher/'))], "
        "'picked': sorted(v for _, v in picker.select.options) == sorted([kd.id, vanilla.id])}",
        epochs=6, teacher_epochs=1, n_train=600, student_width=32, teacher_width=8,
        store_path=str(tmp_path / "store"), report_path=str(report))
    # the cell after the launch ran while the run was still queued/running: the kernel was not blocked
    assert res["status"] in ("queued", "running") and res["dt"] < 5.0, res
    assert res["kd"] == "completed" and res["vanilla"] == "completed" and res["kinds"] == ["train", "train"], res
    assert res["rows"] > 0 and res["updates"] >= 1, res
    assert res["epochs"] == [6, 6] and res["names"] == ["quickstart-kd", "quickstart-vanilla"], res
    assert all(0.0 <= a <= 1.0 for a in res["acc"]), res
    assert res["teacher"][0] and not res["teacher"][1], res  # only the KD run trained (and tested) a teacher
    assert res["picked"], res  # the run picker lists the store's two runs
    text = report.read_text()
    assert "quickstart-kd" in text and "quickstart-vanilla" in text
