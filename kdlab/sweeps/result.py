"""What a sweep saved: its trials (parameters, state, objective, learning curve, run id) and settings.

The sweep job writes ``artifacts/sweep.json`` after every change (a trial started, reported an epoch, ended), so
the file is the live view of the sweep: the dashboard page, the notebook widget and the report read it through
``read_sweep`` and hold nothing of their own. ``save_sweep``/``read_sweep`` are its one writer and reader.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

SWEEP_FILE = "sweep.json"
#: trial states: waiting for a slot, training, finished, stopped early by the pruner, failed, worker lost
STATES = ("queued", "running", "complete", "pruned", "failed", "interrupted")


@dataclass
class Trial:
    """One configuration tried: ``params`` are the space's keys (``method.name``, ``method.params.temperature``)
    with the values drawn; ``value`` is the objective (best validation accuracy over epochs); ``curve`` the
    objective metric after each epoch ``[[epoch, value], ...]``; ``run_id`` the training run in the store."""

    number: int
    params: dict[str, Any]
    state: str = "queued"
    value: float | None = None
    curve: list[list[float]] = field(default_factory=list)
    run_id: str | None = None
    attempts: int = 1
    started: float | None = None
    finished: float | None = None
    note: str = ""

    @property
    def duration_s(self) -> float | None:
        return (self.finished - self.started) if (self.started and self.finished) else None


@dataclass
class SweepResult:
    """A sweep's settings and trials, in the order they were started."""

    sweep_id: str
    engine: str  # "optuna" (trials are local runs) or "ray" (Ray Tune trials)
    sampler: str
    pruner: str
    metric: str
    direction: str  # "maximize" or "minimize"
    n_trials: int  # asked for
    space: dict[str, Any]
    base_spec: dict[str, Any]
    trials: list[Trial] = field(default_factory=list)
    importances: dict[str, float] = field(default_factory=dict)  # space key -> share of the objective's variance
    started: float | None = None
    finished: float | None = None
    done: bool = False
    name: str = "sweep"  # the sweep run's name; its trials are named "<name> #<number>"

    @property
    def finished_trials(self) -> list[Trial]:
        return [t for t in self.trials if t.state == "complete" and t.value is not None]

    @property
    def best(self) -> Trial | None:
        """The best complete trial (None before one finished)."""
        done = self.finished_trials
        if not done:
            return None
        pick = max if self.direction == "maximize" else min
        return pick(done, key=lambda t: (t.value, -t.number) if self.direction == "maximize" else (t.value, t.number))

    def best_so_far(self) -> list[tuple[int, float]]:
        """``(trial number, best objective up to it)`` over the complete trials, in trial order."""
        out: list[tuple[int, float]] = []
        best = None
        better = (lambda a, b: a > b) if self.direction == "maximize" else (lambda a, b: a < b)
        for t in sorted(self.finished_trials, key=lambda t: t.number):
            if best is None or better(t.value, best):
                best = t.value
            out.append((t.number, float(best)))
        return out

    def frame(self) -> pd.DataFrame:
        """One row per trial: number, state, value, epochs reported, duration_s, run_id, then one column per
        space key (NaN where a trial did not draw it, e.g. another method's parameter)."""
        keys = list(dict.fromkeys(k for t in self.trials for k in t.params))
        rows = [{"number": t.number, "state": t.state, "value": t.value, "epochs": len(t.curve),
                 "duration_s": t.duration_s, "run_id": t.run_id, **{k: t.params.get(k) for k in keys}}
                for t in self.trials]
        return pd.DataFrame(rows, columns=["number", "state", "value", "epochs", "duration_s", "run_id", *keys])

    def best_spec(self) -> dict[str, Any]:
        """The base spec with the best trial's values applied (ValueError before a trial finished)."""
        from kdlab.sweeps.space import apply_values

        best = self.best
        if best is None:
            raise ValueError(f"sweep {self.sweep_id} has no finished trial yet")
        return apply_values(self.base_spec, best.params)

    def counts(self) -> dict[str, int]:
        return {s: sum(t.state == s for t in self.trials) for s in STATES}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepResult:
        """The result of a saved dict (keys this version does not know are left out)."""
        known, known_trial = set(cls.__dataclass_fields__), set(Trial.__dataclass_fields__)
        trials = [Trial(**{k: v for k, v in t.items() if k in known_trial}) for t in d.get("trials", [])]
        return cls(**{k: v for k, v in d.items() if k in known and k != "trials"}, trials=trials)


def _clean(value: Any) -> Any:
    """JSON has no NaN: non-finite floats become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def save_sweep(result: SweepResult, run_dir: str | os.PathLike[str]) -> Path:
    """Write ``artifacts/sweep.json`` atomically (readers never see half a file)."""
    folder = Path(run_dir) / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SWEEP_FILE
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_clean(result.to_dict()), indent=1))
    os.replace(tmp, path)
    return path


def read_sweep(run_dir: str | os.PathLike[str]) -> SweepResult | None:
    """The sweep saved in ``run_dir`` (None before the job wrote it)."""
    path = Path(run_dir) / "artifacts" / SWEEP_FILE
    if not path.is_file():
        return None
    return SweepResult.from_dict(json.loads(path.read_text()))
