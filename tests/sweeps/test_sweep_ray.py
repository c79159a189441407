"""The same sweep through Ray Tune (``executor: ray``): Tune's Optuna searcher and ASHA, each trial still a training
run of the store (recorded through the store actor), stopped trials recorded as pruned."""
from __future__ import annotations

import pytest
from runs_helpers import tiny_spec

import kdlab

pytest.importorskip("ray.tune")
pytestmark = pytest.mark.slow


def test_ray_tune_sweep_records_its_trials_as_runs(store):
    space = {"method.name": ["kd", "dist"], "optim.lr": [0.1, 1e-5]}
    h = kdlab.sweep(tiny_spec(epochs=3, n_train=2000, width=64), space, trials=4, store=store, sampler="grid",
                    pruner="halving", executor="ray", parallel=2, name="ray sweep")
    assert h.wait(timeout=280) == "completed", (h.record.error, h.output(40))
    result = h.result()
    assert result.engine == "ray" and len(result.trials) == 4
    assert sorted(tuple(sorted(t.params.items())) for t in result.trials) == sorted(
        tuple(sorted(g.items())) for g in [{"method.name": m, "optim.lr": lr} for m in ("kd", "dist")
                                           for lr in (0.1, 1e-5)])  # every grid point once
    for t in result.trials:
        run = store.get_run(t.run_id)
        assert run.executor == "ray" and f"sweep:{h.id}" in run.tags and run.name == f"ray sweep #{t.number}"
        hist = store.history(t.run_id)["val/acc"]
        assert [[e, v] for e, v in zip(hist.index, hist, strict=True)] == t.curve
        assert t.state in ("complete", "pruned")
        assert (run.status, "pruned" in run.tags) == (("completed", False) if t.state == "complete" else
                                                      ("cancelled", True))
    assert result.best.params["optim.lr"] == 0.1 and h.record.summary["best/value"] == result.best.value
