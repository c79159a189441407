"""notebooks/07_diffusion.ipynb executed headless with tiny parameters (nbclient): a ``diffusion`` run launched
with ``kdlab.submit`` into a store (or, re-executed, the finished run of the same parameters), followed by the
widget, polled, and every view drawn by its Python call."""
from __future__ import annotations

import pytest
from diffusion_tiny import TINY, finished_tiny_run
from nb_helpers import run_notebook

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

def test_diffusion_notebook_runs(tmp_path, tmp_path_factory, monkeypatch):
    home, run_id = finished_tiny_run(tmp_path_factory, monkeypatch)
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
