"""What both engines do with a trial's training run: its name and tags in the store, its learning curve read from
the store's epoch rows, its objective, and the parameter importances of a finished set of trials."""
from __future__ import annotations

import copy
import math
import threading
from typing import Any

from kdlab.sweeps.result import SweepResult
from kdlab.sweeps.space import Space

SWEEP_TAG = "sweep:"  # a trial run carries ``sweep:<sweep run id>``
PRUNED_TAG = "pruned"


def trial_tags(sweep_id: str, number: int | None) -> list[str]:
    return [f"{SWEEP_TAG}{sweep_id}", *([f"trial:{number}"] if number is not None else [])]


def trial_name(sweep_name: str, number: int) -> str:
    return f"{sweep_name} #{number}"[:200]


def curve_of(store: Any, run_id: str, metric: str) -> list[list[float]]:
    """``[[epoch, value], ...]`` of ``metric`` in the run's epoch rows (finite values only)."""
    rows = store.metrics(run_id, kind="epoch", keys=[metric])
    out = {int(e): float(v) for e, v in zip(rows["epoch"], rows["value"], strict=True)
           if v is not None and math.isfinite(v)}
    return [[e, out[e]] for e in sorted(out)]


def objective(curve: list[list[float]], direction: str) -> float | None:
    """The trial's objective: the best value of its curve (None before its first epoch)."""
    if not curve:
        return None
    values = [v for _, v in curve]
    return max(values) if direction == "maximize" else min(values)


def importances(result: SweepResult, space: Space, seed: int = 0) -> dict[str, float]:
    """Each searched field's share of the objective's variance over the complete trials (Optuna's fANOVA on the
    fields every complete trial drew; per-method fields are left out); empty with fewer than 4 complete trials
    or no variance."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    done = result.finished_trials
    if len(done) < 4 or len({t.value for t in done}) < 2:
        return {}
    dists = {}
    for d in space.dims:
        if d.choices is not None:
            dists[d.name] = CategoricalDistribution(list(d.choices))
        elif d.integer:
            dists[d.name] = IntDistribution(int(d.low), int(d.high), log=d.log, step=int(d.step or 1))
        else:
            dists[d.name] = FloatDistribution(d.low, d.high, log=d.log, step=d.step)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=result.direction)
    for t in done:
        params = space.engine_params(t.params)
        study.add_trial(optuna.trial.create_trial(params=params, distributions={k: dists[k] for k in params},
                                                  value=t.value))
    try:
        raw = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    except (RuntimeError, ValueError):  # nothing in common to rank
        return {}
    return {path: float(v) for k, v in raw.items() for path in space.values_of({k: v})}


class Importances:
    """Keeps ``result.importances`` current without stalling the sweep: fANOVA over 40 trials takes ~1.4 s, so an
    update runs in a background thread on a copy of the trials (one at a time); ``final`` computes it in place."""

    def __init__(self, result: SweepResult, space: Space, seed: int):
        self.result, self.space, self.seed = result, space, seed
        self.thread: threading.Thread | None = None

    def update(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return  # the running update is followed by the next trial's
        snapshot = copy.deepcopy(self.result)
        self.thread = threading.Thread(target=self._set, args=(snapshot,), daemon=True, name="kdlab-importances")
        self.thread.start()

    def _set(self, snapshot: SweepResult) -> None:
        self.result.importances = importances(snapshot, self.space, self.seed)

    def final(self) -> None:
        if self.thread is not None:
            self.thread.join()
        self._set(self.result)
