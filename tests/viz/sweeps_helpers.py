"""A realistic sweep for the figure tests (imported by name): methods kd/dkd/dist/nd, per-method parameters, a log
learning rate, pruned trials with short curves, one failed and one running trial."""
from __future__ import annotations

import numpy as np

from kdlab.sweeps.result import SweepResult, Trial

SPACE = {"method.name": ["kd", "dkd", "dist", "nd"], "optim.lr": {"low": 0.001, "high": 0.1, "log": True},
         "student.params.width": [16, 32, 64],
         "method.params": {"kd": {"temperature": {"low": 1, "high": 8}},
                           "dkd": {"temperature": {"low": 1, "high": 8}, "beta": {"low": 1, "high": 8}},
                           "dist": {"tau": {"low": 1, "high": 8}}, "nd": {"weight": {"low": 0.1, "high": 2}}}}
BASE = {"name": "sw", "seed": 0, "data": {"name": "digits"}, "teacher": {"name": "mlp"},
        "student": {"name": "mlp", "params": {"width": 32}}, "method": {"name": "kd"},
        "optim": {"epochs": 3, "lr": 0.05}}


def make_sweep(n: int = 30, seed: int = 0, epochs: int = 3) -> SweepResult:
    """``n`` trials: every 4th after the 4th pruned after one epoch, trial 5 failed, the last one running."""
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n):
        method = ["kd", "dkd", "dist", "nd"][i % 4]
        params = {"method.name": method, "optim.lr": float(10 ** rng.uniform(-3, -1)),
                  "student.params.width": int(rng.choice([16, 32, 64]))}
        for k in SPACE["method.params"][method]:
            params[f"method.params.{k}"] = round(float(rng.uniform(1, 8)), 3)
        top = 0.6 + 0.3 * rng.uniform() + 0.02 * (method == "dkd")
        curve = [[e, round(top * (1 - 0.5 ** e), 4)] for e in range(1, epochs + 1)]
        state, note = "complete", ""
        if i == 5:
            state, curve, note = "failed", curve[:1], "loss is NaN at epoch 2"
        elif i == n - 1:
            state, curve = "running", curve[:2]
        elif i >= 4 and i % 4 == 3:
            state, curve = "pruned", curve[:1]
        value = max(v for _, v in curve) if state == "complete" else None
        trials.append(Trial(number=i, params=params, state=state, value=value, curve=curve, run_id=f"r{i:04d}",
                            started=100.0 + i, finished=None if state == "running" else 130.0 + i, note=note))
    return SweepResult(sweep_id="sweep01", engine="optuna", sampler="tpe", pruner="median", metric="val/acc",
                       direction="maximize", n_trials=n + 4, space=SPACE, base_spec=BASE, trials=trials,
                       importances={"optim.lr": 0.55, "method.name": 0.3, "student.params.width": 0.15})
