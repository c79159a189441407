"""Helpers of the run-store tests (imported by name: tests/ has no packages)."""
from __future__ import annotations

from typing import Any

from waiting import wait_for  # noqa: F401  (the runs tests import it from here)

TEACHER = {"name": "mlp", "params": {"width": 32}, "optim": {"epochs": 1, "batch_size": 64}}


def tiny_spec(epochs: int = 2, n_train: int = 300, width: int = 32, seed: int = 0, **extra: Any) -> dict[str, Any]:
    """A spec that trains in well under a second on one CPU thread (teacher trained once, then cached)."""
    spec = {"name": "tiny", "seed": seed, "device": "cpu",
            "data": {"name": "mnist5k", "params": {"n_train": n_train}},
            "teacher": TEACHER, "student": {"name": "mlp", "params": {"width": width}},
            "method": {"name": "kd"}, "optim": {"epochs": epochs, "batch_size": 64}}
    spec.update(extra)
    return spec


def finished_run(store: Any) -> str:
    """A completed training run of ``store`` with a small ConvNet teacher (trained here in the foreground)."""
    from kdlab.runs.experiment import run_experiment

    spec = tiny_spec(name="analysed", teacher={"name": "convnet", "params": {"width": 4, "depth": 2},
                                                "optim": {"epochs": 1, "batch_size": 64}})
    rid = store.create_run(spec, status="completed")
    run_experiment(spec, run_dir=store.run_dir(rid))
    return rid
