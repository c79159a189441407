"""notebooks/01_quickstart.ipynb executed headless with small parameters (nbclient)."""
from __future__ import annotations

import pytest
from nb_helpers import run_notebook

pytestmark = pytest.mark.slow


def test_quickstart_runs_and_kernel_stays_free(tmp_path):
    report = tmp_path / "report.html"
    res = run_notebook(
        "01_quickstart.ipynb", tmp_path,
        "{'status': status_after_launch, 'dt': seconds_after_launch, 'kd': kd.status, 'vanilla': vanilla.status, "
        "'updates': monitor.updates, 'rows': monitor.poller.points}",
        epochs=6, teacher_epochs=1, n_train=600, student_width=32, teacher_width=8,
        store_path=str(tmp_path / "store"), report_path=str(report))
    # the cell after the launch ran while the run was still queued/running: the kernel was not blocked
    assert res["status"] in ("queued", "running") and res["dt"] < 5.0, res
    assert res["kd"] == "completed" and res["vanilla"] == "completed", res
    assert res["rows"] > 0 and res["updates"] >= 1, res
    assert report.is_file() and "quickstart-kd" in report.read_text()
