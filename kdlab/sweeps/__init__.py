"""Sweeps: search the configurations of an experiment spec (method, its parameters, optimiser, student) with
Optuna or Ray Tune, each trial a training run in the store, bad trials pruned by their validation accuracy.

``kdlab.sweep(spec, space, trials=40)`` launches the ``sweep`` job (``kdlab.jobs.sweep``) and returns its
``RunHandle``; ``handle.result()`` is the ``SweepResult`` (``best``, ``best_spec()``, ``frame()``). ``advise``
ranks methods for a new spec from the trials of earlier sweeps.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from kdlab.sweeps.result import SweepResult, Trial, read_sweep
from kdlab.sweeps.space import Space, apply_values, check_space

__all__ = ["Space", "SweepResult", "Trial", "apply_values", "check_space", "read_sweep", "sweep"]


def sweep(spec: Mapping[str, Any] | str | os.PathLike[str], space: Mapping[str, Any] | str | os.PathLike[str],
          trials: int = 20, *, store: Any = None, name: str | None = None, tags: Iterable[str] = (),
          **options: Any) -> Any:
    """Launch a sweep of ``spec`` (a mapping or YAML/JSON file) over ``space`` (same) in the background; options
    are the ``sweep`` job's parameters (sampler, pruner, metric, direction, parallel, retries, grace_epochs, seed,
    and ``executor``: ``"ray"`` runs the trials as Ray Tune trials; the sweep's own process is always local).
    Returns the sweep's ``RunHandle``; a bad space fails here, naming the field."""
    from kdlab.runs.background import launch
    from kdlab.runs.spec import _mapping

    spec_map = _mapping(spec) if isinstance(spec, (str, os.PathLike)) else dict(spec)
    space_map = _mapping(space) if isinstance(space, (str, os.PathLike)) else dict(space)
    params = {"spec": spec_map, "space": space_map, "trials": trials, **options}
    return launch({"kind": "sweep", "params": params, "device": "cpu"}, "local", store, name, tags=tags)
