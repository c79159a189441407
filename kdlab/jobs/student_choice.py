"""The ``student_choice`` job: rank candidate students for a run's teacher before training any of them
(DisWOT's training-free idea, ``kdlab.analysis.student_choice``).

Its file is ``artifacts/student_ranking.csv`` (one row per candidate, best first, with its relation distance,
CKA and parameter count); ``read`` returns it as a DataFrame.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from kdlab.analysis.student_choice import METRICS, rank_students
from kdlab.errors import ConfigError
from kdlab.jobs.source import RUN_PARAM, check_source_run, source_models
from kdlab.models import MODELS
from kdlab.registry import Param
from kdlab.runs.job import Job, JobContext, register_job

RANKING_FILE = "student_ranking.csv"
CANDIDATES = ["mlp", "convnet", "resnet8", "vit_tiny"]


@register_job("student_choice")
class StudentChoiceJob(Job):
    """Rank candidate students for a finished run's teacher without training them (DisWOT)."""

    params = {
        "run": RUN_PARAM,
        "candidates": Param(CANDIDATES, "zoo model names, or {name, params} mappings", list),
        "metric": Param("relation", "relation distance (lower is better) or debiased CKA", str, choices=METRICS),
        "split": Param("val", "which split's images to use", str, choices=("train", "val", "test")),
        "n_samples": Param(128, "images in the batch", int, 4, 4096),
        "seeds": Param(3, "random initialisations averaged per candidate", int, 1, 20),
    }

    def check(self, params: Mapping[str, Any], store: Any) -> dict[str, Any]:
        if not params["candidates"]:
            raise ConfigError("params.candidates: give at least one student")
        for i, c in enumerate(params["candidates"]):
            name = c.get("name") if isinstance(c, Mapping) else c
            MODELS.entry(str(name), where=f"params.candidates[{i}]")
        return {**params, "run": check_source_run(store, params["run"], need_teacher=True)}

    def title(self, params: Mapping[str, Any]) -> str:
        return f"students-{params.get('run') or ''}"[:200]

    def run(self, ctx: JobContext) -> dict[str, float]:
        p = ctx.params
        src = source_models(ctx)
        cands = {(c if isinstance(c, str) else f"{c['name']}{sorted((c.get('params') or {}).items())}"): c
                 for c in p["candidates"]}
        ctx.progress(0, 1, f"ranking {len(cands)} candidates")
        table = rank_students(src.teacher, cands, getattr(src.splits, p["split"]), metric=p["metric"],
                              n_samples=p["n_samples"], seeds=list(range(p["seeds"])))
        table.to_csv(ctx.artifact(RANKING_FILE), index=False)
        ctx.progress(1, 1, f"best: {table['candidate'].iloc[0]}")
        return {f"{p['metric']}/{c}": float(v) for c, v in zip(table["candidate"], table[p["metric"]], strict=True)}

    def read(self, run_dir: str | Path) -> pd.DataFrame | None:
        path = Path(run_dir) / "artifacts" / RANKING_FILE
        return pd.read_csv(path) if path.is_file() else None
