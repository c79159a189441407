"""Helpers of the report tests (imported by name: tests/ has no packages)."""
from __future__ import annotations

TINY_SPEC = {
    "name": "tiny-kd", "seed": 0, "device": "cpu",
    "data": {"name": "digits", "params": {"n_train": 300}},  # sklearn digits: loads in ms
    "teacher": {"name": "mlp", "params": {"width": 32}, "optim": {"epochs": 1, "batch_size": 64}},
    "student": {"name": "mlp", "params": {"width": 16}},
    "method": {"name": "kd"}, "optim": {"epochs": 2, "batch_size": 64},
}


def stored_run(store, experiment_dir) -> str:
    """A completed training run of ``store`` whose folder is a copy of ``experiment_dir``."""
    import shutil

    rid = store.create_run(TINY_SPEC, status="completed")
    shutil.rmtree(store.run_dir(rid))
    shutil.copytree(experiment_dir, store.run_dir(rid))
    return rid
