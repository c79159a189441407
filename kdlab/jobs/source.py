"""The parameter and checks shared by jobs that analyse a finished training run (``run: <run id>``)."""
from __future__ import annotations

from typing import Any

from kdlab.errors import ConfigError
from kdlab.registry import Param
from kdlab.runs.experiment import RunModels, load_models
from kdlab.runs.job import JobContext, kind_of

RUN_PARAM = Param(None, "id of the finished training run to analyse (in the same store)", str)


def check_source_run(store: Any, run_id: str | None, need_teacher: bool = True, where: str = "params.run") -> str:
    """The id of the completed training run of ``store`` that ``run_id`` names (an id, a unique prefix or name;
    with a teacher if needed), else ConfigError."""
    if not run_id:
        done = [r.id for r in store.records("completed") if kind_of(r.spec) == "train"][:10]
        raise ConfigError(f"{where}: give the id of a completed training run; completed: {done or '(none yet)'}")
    rec = store.get_run(store.resolve(run_id))
    if kind_of(rec.spec) != "train":
        raise ConfigError(f"{where}: run {rec.id} is a {kind_of(rec.spec)} job, not a training run")
    if rec.status != "completed":
        raise ConfigError(f"{where}: run {rec.id} is {rec.status}; analyse it once it has completed")
    if need_teacher and not rec.spec.get("teacher"):
        raise ConfigError(f"{where}: run {rec.id} has no teacher to compare its student with")
    return rec.id


def source_models(ctx: JobContext, need_teacher: bool = True) -> RunModels:
    """The analysed run's teacher, student and data splits, rebuilt from its checkpoint."""
    run_id = ctx.params["run"]
    if ctx.store is None:
        raise ConfigError("params.run: a job on a stored run needs the run store (launch it with kdlab.launch)")
    models = load_models(ctx.store.run_dir(run_id))
    if need_teacher and models.teacher is None:
        raise ConfigError(f"params.run: run {run_id} has no teacher to compare its student with")
    return models
