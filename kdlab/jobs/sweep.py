"""The ``sweep`` job: search distillation configurations (method, its parameters, optimiser, student) of one
experiment spec with Optuna (``executor: local``: each trial a ``train`` run in the store) or Ray Tune
(``executor: ray``: Tune trials with ASHA, each still a run in the store), pruning bad trials by their validation
accuracy after each epoch.

The sweep run takes no slot of the queue (``CONTROLLER_KINDS``): its trials do. Its file is
``artifacts/sweep.json`` (``kdlab.sweeps.result``: ``save_sweep``/``read_sweep``), rewritten as trials move, so the
page and widget follow it live; a killed or cancelled sweep resumes from it (Optuna's study is in
``artifacts/optuna.journal``).
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdlab.errors import ConfigError, KdlabError
from kdlab.registry import Param
from kdlab.runs.job import Job, JobContext, register_job

METRICS = ("val/acc", "val/loss", "val/agreement")  # what the trainer records after every epoch


@register_job("sweep")
class SweepJob(Job):
    """Search configurations of an experiment spec: trials are training runs, bad ones pruned early."""

    resumable = True
    params = {
        "spec": Param({}, "the base experiment spec (data, teacher, student, method, optim) every trial starts from",
                      dict),
        "space": Param({}, "spec fields to search: `path: [choices]` or `path: {low, high, log, step}`; method "
                       "parameters per method under `method.params: {kd: {...}}`", dict),
        "trials": Param(20, "how many trials (a grid search stops at the grid's size)", int, 1, 10_000),
        "sampler": Param("tpe", "how configurations are drawn", str, choices=("tpe", "random", "grid")),
        "pruner": Param("median", "stops trials early by the metric after each epoch (ray: median stopping rule, "
                        "ASHA, none)", str, choices=("median", "halving", "none")),
        "executor": Param("local", "local: Optuna, trials as local runs; ray: Ray Tune (ASHA for halving)", str,
                          choices=("local", "ray")),
        "metric": Param("val/acc", "the objective: best value over a trial's epochs", str, choices=METRICS),
        "direction": Param("maximize", "whether the metric should be high or low", str,
                           choices=("maximize", "minimize")),
        "parallel": Param(None, "trials in flight at once (default: the store's slots)", int, 1, 256),
        "retries": Param(1, "times a trial whose worker died is resumed before it is recorded as interrupted", int,
                         0, 10),
        "grace_epochs": Param(1, "epochs a trial runs before the pruner may stop it", int, 1, 1000),
        "seed": Param(0, "seed of the sampler (each trial trains with the base spec's seed)", int, 0, None),
    }

    def check(self, params: Mapping[str, Any], store: Any) -> dict[str, Any]:
        from kdlab.runs.spec import load_spec
        from kdlab.sweeps.space import check_space

        p = dict(params)
        if not p["spec"]:
            raise ConfigError.at("params.spec", "give the base experiment spec the trials start from")
        try:
            base = load_spec(p["spec"])
        except KdlabError as e:
            raise ConfigError(f"params.spec: {e}", issues=[i.under("params", "spec") for i in e.issues]) from None
        if base.task != "distill":
            raise ConfigError.at("params.spec.task", "a sweep searches distillation specs (task: distill)")
        try:
            space = check_space(p["space"], base.to_dict())
        except KdlabError as e:
            raise ConfigError(f"params.{e}", issues=[i.under("params") for i in e.issues]) from None
        if p["sampler"] == "grid":
            try:
                size = len(space.grid())
            except KdlabError as e:
                raise ConfigError(f"params.{e}", issues=[i.under("params") for i in e.issues]) from None
            p["trials"] = min(p["trials"], size)
        if p["executor"] == "ray":
            try:
                import ray.tune  # noqa: F401
            except ImportError:
                raise ConfigError.at("params.executor", "Ray Tune is not installed: pip install 'kdlab[ray]'; "
                                     "valid: local, ray") from None
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise ConfigError.at("params", "sweeps need Optuna: pip install 'kdlab[sweep]'") from None
        return {**p, "spec": base.to_dict()}

    def title(self, params: Mapping[str, Any]) -> str:
        short = {"method.name": "method", "method.params": "method params"}
        keys = [short.get(k, k.rsplit(".", 1)[-1]) for k in (params.get("space") or {})]
        name = (params.get("spec") or {}).get("name", "experiment")
        return f"sweep of {name}: {', '.join(keys)}"[:120]

    def run(self, ctx: JobContext) -> dict[str, Any]:
        from kdlab.sweeps.result import SweepResult, read_sweep, save_sweep
        from kdlab.sweeps.space import check_space

        p = ctx.params
        if not ctx.recording:
            raise ConfigError("a sweep runs as a job in the run store: kdlab.sweep(...) or kdlab.submit('sweep', ...)")
        space = check_space(p["space"], p["spec"])
        result = read_sweep(ctx.run_dir) if ctx.resume else None
        if result is None:
            result = SweepResult(ctx.run_id or "foreground", "ray" if p["executor"] == "ray" else "optuna",
                                 p["sampler"], p["pruner"], p["metric"], p["direction"], p["trials"], dict(p["space"]),
                                 dict(p["spec"]), started=time.time(), name=ctx.store.get_run(ctx.run_id).name)
        result.done = False
        if p["executor"] == "ray":
            from kdlab.sweeps.ray_engine import RaySweep

            RaySweep(ctx, space, result, p).run()
        else:
            from kdlab.sweeps.optuna_engine import OptunaSweep

            OptunaSweep(ctx, space, result, p).run()
        result.done, result.finished = True, time.time()
        save_sweep(result, ctx.run_dir)
        counts = result.counts()
        best = result.best
        return {"trials": len(result.trials), "complete": counts["complete"], "pruned": counts["pruned"],
                "failed": counts["failed"] + counts["interrupted"],
                **({"best/value": best.value, "best/trial": best.number} if best else {})}

    def read(self, run_dir: str | Path) -> Any:
        from kdlab.sweeps.result import read_sweep

        return read_sweep(run_dir)
