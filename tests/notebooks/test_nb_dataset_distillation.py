"""notebooks/05_dataset_distillation.ipynb executed headless with small parameters (nbclient)."""
from __future__ import annotations

import pytest
from nb_helpers import run_notebook

pytestmark = pytest.mark.slow


def test_dataset_distillation_notebook_runs(tmp_path):
    report = tmp_path / "report.html"
    res = run_notebook(
        "05_dataset_distillation.ipynb", tmp_path,
        "{'status': status_after_launch, 'final': final_status, 'ipc': syn.ipc, 'n': len(syn), "
        "'sets': sorted(table.index), 'neigh': list(neigh.index.shape), 'snaps': viewer.snapshots}",
        data_name="digits", data_params={"n_train": 200}, method="dm", ipc=1, iterations=4, batch_real=16,
        fyi=True, model_params={"width": 16, "depth": 2}, eval_epochs=2, n_nets=1,
        store_path=str(tmp_path / "store"), report_path=str(report))
    assert res["status"] in ("queued", "running"), res  # launch returned before the job finished
    assert res["final"] == "completed" and res["ipc"] == 1 and res["n"] == 10, res
    assert res["sets"] == ["dm", "random real"] and res["neigh"] == [10, 5], res
    assert res["snaps"] == [0, 1, 2, 3, 4], res
    assert (tmp_path / "synthetic.npz").is_file() and (tmp_path / "synthetic.png").is_file()
    html = report.read_text()
    assert "dm-ipc1" in html and "synthetic images per class" in html
