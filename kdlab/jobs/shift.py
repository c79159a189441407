"""The ``shift`` job: studies of distillation under distribution shift (``kdlab.shift.studies``) on the source zoo —
the 8-target benchmark, Meta-DMoE, complementary transfer between every pair, source-free adaptation, KD3 and HARD.

Its file is ``artifacts/shift.json``: ``{"zoo": source cards, "studies": {name: the study's dict}}``, written after
each study, so a killed job keeps the studies it finished and resuming it runs only the others.
``save_shift``/``load_shift`` are its one writer and reader (the report's "shift" section reads it too).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdlab.errors import ConfigError, unknown
from kdlab.jobs.transfer_rank import ZOO_PARAMS, zoo_of
from kdlab.registry import Param
from kdlab.runs.job import Job, JobContext, register_job
from kdlab.shift.studies import STUDIES, study_fn
from kdlab.shift.targets import TARGETS
from kdlab.transfer import BUILTIN_SOURCES, METRICS, WIDE_SOURCES

SHIFT_FILE = "shift.json"


@register_job("shift")
class ShiftJob(Job):
    """Run studies of distillation under shift on the zoo; each study's tables and figures data are saved."""

    resumable = True
    params = {
        "studies": Param(["benchmark"], f"which studies, in order: {', '.join(STUDIES)}", list),
        "seed": Param(0, "seed of data choices and training", int, 0, None),
        "scale": Param(1.0, "multiplies every study's training budget (1: about a minute per study)", float,
                       0.02, 20.0),
        "targets": Param([], f"benchmark targets (empty: all {len(TARGETS)})", list),
        "labels_per_class": Param(5, "benchmark label budget per class", int, 1, 1000),
        "metric": Param("linear_probe", "the metric DistillNearest/Weighted rank by", str, choices=tuple(METRICS)),
        "temperature": Param(0.5, "of DistillWeighted's weights", float, 0.01, 100.0),
        "sources": Param([], "names of the zoo's sources to use (empty: all)", list),
        **ZOO_PARAMS,
    }

    def check(self, params: Mapping[str, Any], store: Any) -> dict[str, Any]:
        studies = list(params["studies"])
        if not studies:
            raise ConfigError(f"params.studies: choose at least one of {', '.join(STUDIES)}")
        for i, s in enumerate(studies):
            if s not in STUDIES:
                raise unknown("study", str(s), list(STUDIES), where=f"params.studies[{i}]")
        names = [d.name for d in WIDE_SOURCES]
        for i, name in enumerate(params["sources"]):
            if name not in names:
                raise unknown("source", str(name), names, where=f"params.sources[{i}]")
        for i, t in enumerate(params["targets"]):
            if t not in TARGETS:
                raise unknown("target", str(t), list(TARGETS), where=f"params.targets[{i}]")
        return {**params, "studies": studies}

    def title(self, params: Mapping[str, Any]) -> str:
        return "shift-" + "+".join(params.get("studies") or ["benchmark"])

    def run(self, ctx: JobContext) -> dict[str, float]:
        p = ctx.params
        done = (load_shift(ctx.run_dir) or {}).get("studies", {}) if ctx.resume else {}  # resumed: keep what's done
        studies = list(p["studies"])
        # the benchmark ranks the wide zoo; the other studies use the built-in sources (the same trained models:
        # both zoos share one cache folder), so a study's result does not depend on what else the job runs
        zoo = zoo_of(p, WIDE_SOURCES if "benchmark" in studies else BUILTIN_SOURCES)
        zoo.build(progress=lambda i, n, m: ctx.progress(i, n, m))
        builtin = zoo_of(p, BUILTIN_SOURCES)
        cards = [{k: v for k, v in row.items() if k in ("task", "classes", "accuracy", "data")} | {"name": name}
                 for name, row in zoo.cards().iterrows()]
        metrics: dict[str, float] = {}
        for k, name in enumerate(studies):
            if name not in done:
                def progress(i: int, n: int, msg: str, k: int = k, name: str = name) -> None:
                    ctx.progress(k * 1000 + round(1000 * i / max(n, 1)), 1000 * len(studies), f"{name}: {msg}")

                options = ({"targets": p["targets"] or None, "labels_per_class": p["labels_per_class"],
                            "metric": p["metric"], "temperature": p["temperature"]} if name == "benchmark" else {})
                done[name] = study_fn(name)(zoo if name == "benchmark" else builtin, seed=p["seed"], scale=p["scale"],
                                            progress=progress, **options)
                save_shift(ctx.run_dir, cards, done)
            metrics.update({f"{name}/{key}": float(v) for key, v in done[name].get("summary", {}).items()
                            if isinstance(v, (int, float)) and math.isfinite(v)})
        ctx.progress(1, 1, f"{len(studies)} studies done")
        return metrics

    def read(self, run_dir: str | Path) -> dict[str, Any] | None:
        return load_shift(run_dir)


def shift_path(folder: str | Path) -> Path:
    return Path(folder) / "artifacts" / SHIFT_FILE


def save_shift(folder: str | Path, zoo: list[dict[str, Any]], studies: Mapping[str, Any]) -> Path:
    """Write the zoo's cards and the finished studies (atomically; NaN is written as null)."""
    path = shift_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_plain({"zoo": zoo, "studies": dict(studies)})))
    tmp.replace(path)
    return path


def load_shift(folder: str | Path) -> dict[str, Any] | None:
    """What ``save_shift`` wrote, or None when the run has none or it is unreadable."""
    path = shift_path(folder)
    try:
        data = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("studies"), dict) else None


def _plain(value: Any) -> Any:
    """JSON-ready: non-finite floats -> None, tuples -> lists, numpy scalars -> Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
