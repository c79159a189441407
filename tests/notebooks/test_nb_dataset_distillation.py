"""notebooks/05_dataset_distillation.ipynb executed headless with small parameters (nbclient): the foreground
condensation, and the same condensation as a run of a temporary store, viewed with the widget (a ``neighbours``
job)."""
from __future__ import annotations

import pytest
from nb_helpers import run_notebook

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DIGITS = [str(d) for d in range(10)]


def test_dataset_distillation_notebook_runs(tmp_path):
    report = tmp_path / "report.html"
    res = run_notebook(
        "05_dataset_distillation.ipynb", tmp_path,
        "{'status': status_after_launch, 'final': final_status, 'ipc': syn.ipc, 'n': len(syn), "
        "'sets': sorted(table.index), 'snaps': viewer.snapshots, 'job': [viewer.task.kind, viewer.task.status], "
        "'of': viewer.task.record.spec['params']['run'] == handle.id, 'neigh': list(neigh.distances.shape), "
        "'shape': list(neigh.neighbours.shape), 'rows': neigh.rows, 'space': neigh.space, 'it': neigh.iteration, "
        "'sorted': bool((neigh.distances[:, 1:] >= neigh.distances[:, :-1]).all()), "
        "'figures': len(viewer.out.outputs), 'grid': len(viewer.grid_out.outputs), "
        "'cross': [list(cross.index), list(cross.columns)], 'soft': sets['cv_dd'].soft is not None}",
        timeout=300, data_name="digits", data_params={"n_train": 200}, method="dm", ipc=1, iterations=4,
        batch_real=16, fyi=True, model_params={"width": 16, "depth": 2}, eval_epochs=2, n_nets=1,
        compare=["herding", "cv_dd"], compare_options={"herding": {"reference_epochs": 1},
                         "cv_dd": {"iterations": 2, "method_params": {"committee": ["mlp"], "committee_epochs": 1,
                                                                   "voters": 1}}},
        store_path=str(tmp_path / "store"), report_path=str(report))
    assert res["status"] in ("queued", "running"), res  # launch returned before the job finished
    assert res["final"] == "completed" and res["ipc"] == 1 and res["n"] == 10, res
    assert res["sets"] == ["dm", "random real"], res
    assert res["cross"] == [["cv_dd", "dm", "herding", "random"], ["convnet", "mlp", "resnet8", "vit_tiny"]], res
    assert res["soft"], res  # CV-DD's committee labels
    assert res["snaps"] == [0, 1, 2, 3, 4] and res["grid"] == 1, res
    assert res["job"] == ["neighbours", "completed"] and res["of"], res
    # the set at the slider's (last) snapshot; one row per class, its 5 nearest real images, closest first
    assert res["it"] == 4 and res["space"] == "feature" and res["rows"] == DIGITS, res
    assert res["neigh"] == [10, 5] and res["shape"] == [10, 5, 1, 8, 8] and res["sorted"], res
    assert res["figures"] == 2, res  # neighbours and class means
    assert (tmp_path / "synthetic.npz").is_file() and (tmp_path / "synthetic.png").is_file()
    html = report.read_text()
    assert "dm-ipc1" in html and "synthetic images per class" in html
