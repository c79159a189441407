"""notebooks/07_diffusion.ipynb executed headless with tiny parameters (nbclient): a ``diffusion`` run launched
with ``kdlab.submit`` into a store (or, re-executed, the finished run of the same parameters), followed by the
widget, polled, and every view drawn by its Python call."""
from __future__ import annotations

from pathlib import Path

import pytest
from nb_helpers import run_notebook

import kdlab

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# the tiny run of the diffusion tests (tests/dashboard/test_diffusion_page.py, tests/ui/test_diffusion_ui.py): the
# same parameters and store, so one run serves the whole session
TINY = {"data": "eight_gaussians", "n_train": 2000, "method": "progressive", "teacher_width": 64, "teacher_steps": 100,
        "steps": 6, "snapshot_every": 3, "n_eval": 100, "batch_size": 64, "teacher_eval_steps": [1, 8],
        "student_eval_steps": [1, 2]}


def tiny_run(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """The session's tiny finished ``diffusion`` run: (store folder, run id), launched by the first test asking."""
    from kdlab.runs.store import open_store
    from kdlab.ui.diffusion import find_run

    base = tmp_path_factory.getbasetemp() / "diffusion-tiny"
    monkeypatch.setenv("KDLAB_CACHE", str(base / "cache"))  # the teacher is trained once, then cached
    store = open_store(base / "home")
    run = find_run(store, **TINY) or kdlab.submit("diffusion", store=store, **TINY)
    assert run.wait(timeout=180) == "completed", run.record.error
    return base / "home", run.id


def test_diffusion_notebook_runs(tmp_path, tmp_path_factory, monkeypatch):
    home, run_id = tiny_run(tmp_path_factory, monkeypatch)
    res = run_notebook(
        "07_diffusion.ipynb", tmp_path,
        "{'status': run.status, 'run': run.id, 'figures': len(dw.out.outputs), 'live': len(dw.live.outputs), "
        "'label': dw.label.value, 'who': sorted(art.quality.who.unique()), 'steps': sorted(art.quality.steps), "
        "'frames': len(dv.trajectory_figure(art.trajectories).frames), "
        "'snapshots': len(dv.snapshot_figure(art.snapshots).frames), 'snapshot_steps': art.snapshots['step'].tolist()}",
        timeout=200, store_path=str(home), reuse=True, **TINY)
    assert res["status"] == "completed" and res["run"] == run_id, res  # the finished run of the same parameters
    assert res["figures"] == 8 and res["live"] == 0, res  # card, quality, table, grid, trajectories, snapshots,
    # curves, speed (2-D data: no neighbours)
    assert res["label"].startswith("done: method progressive on eight_gaussians"), res
    assert res["who"] == ["student", "teacher"] and res["steps"] == [1, 1, 2, 8], res
    assert res["frames"] == 9 and res["snapshots"] == len(res["snapshot_steps"]) >= 2, res  # teacher 8 steps + noise
