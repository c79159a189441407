"""The ``transfer_rank`` job: rank the source zoo for a target task with a label budget (transferability
metrics), and the weights that pick or mix the sources.

Its file is ``artifacts/source_selection.json`` (scores per source and metric, weights, and, when a notebook adds
them, realised accuracies and method accuracies); ``save_selection``/``load_selection`` are its one writer and
reader (the report's "source selection" section reads it too).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kdlab.data import DATASETS
from kdlab.errors import unknown
from kdlab.registry import Param
from kdlab.runs.job import Job, JobContext, register_job
from kdlab.transfer import BUILTIN_SOURCES, METRICS, SourceDef, SourceZoo, make_target, rank_sources, source_weights


def target_of(params: Mapping[str, Any]) -> Any:
    """The target task the parameters name (deterministic, cheap: a stratified label subset)."""
    extra = {"size": params["size"]} if params["target"] == "digits" else {}
    return make_target(params["target"], params["labels_per_class"], params["seed"], **extra)


#: How the built-in sources of a job's zoo are trained (shared by the jobs that use the zoo).
ZOO_PARAMS = {
    "zoo_width": Param(16, "width of the built-in sources' ConvNet", int, 1, 512),
    "zoo_depth": Param(3, "depth of the built-in sources' ConvNet", int, 1, 8),
    "zoo_epochs": Param(3, "epochs the built-in sources are trained", int, 1, 500),
    "zoo_n_train": Param(None, "training images per source (empty: all of mnist5k's)", int, 10, None),
    "zoo_root": Param(None, "folder of the zoo (empty: the cache folder of this setting)", str),
}


def zoo_of(params: Mapping[str, Any], defs: Sequence[SourceDef] = BUILTIN_SOURCES) -> SourceZoo:
    """The source zoo the parameters name, from ``defs`` (its sources are trained once per setting and cached)."""
    wanted = list(params.get("sources") or [])
    return SourceZoo(root=params["zoo_root"], arch_params={"width": params["zoo_width"], "depth": params["zoo_depth"],
                                                           "norm": "batchnorm"},
                     epochs=params["zoo_epochs"], n_train=params["zoo_n_train"],
                     sources=[d for d in defs if not wanted or d.name in wanted])


@register_job("transfer_rank")
class TransferRankJob(Job):
    """Rank the built-in source zoo for a target task with a label budget; the source weights by a metric."""

    params = {
        "target": Param("digits", "registered dataset of the target task", str),
        "size": Param(28, "image side of digits (28 matches the sources)", int, 8, 64),
        "labels_per_class": Param(10, "label budget per class", int, 1, 1000),
        "seed": Param(0, "which labelled images", int, 0, None),
        "metric": Param("linear_probe", "the metric that weights the sources", str, choices=tuple(METRICS)),
        "temperature": Param(0.5, "of the weights: small -> nearest only, large -> uniform", float, 0.01, 100.0),
        "sources": Param([], "names of the built-in sources to rank (empty: all)", list),
        **ZOO_PARAMS,
    }

    def check(self, params: Mapping[str, Any], store: Any) -> dict[str, Any]:
        DATASETS.entry(params["target"], where="params.target")
        names = [d.name for d in BUILTIN_SOURCES]
        for i, name in enumerate(params["sources"]):
            if name not in names:
                raise unknown("source", str(name), names, where=f"params.sources[{i}]")
        return dict(params)

    def title(self, params: Mapping[str, Any]) -> str:
        return f"rank-{params.get('target', 'digits')}-{params.get('labels_per_class', 10)}pc"

    def run(self, ctx: JobContext) -> dict[str, float]:
        p = ctx.params
        zoo = zoo_of(p)
        zoo.build(progress=lambda i, n, m: ctx.progress(i, 2 * n, m))
        tgt = target_of(p)
        scores = rank_sources(zoo, tgt.labelled, progress=lambda i, n, m: ctx.progress(n + i, 2 * n, m))
        weights = source_weights(scores, p["temperature"], p["metric"])
        save_selection(ctx.run_dir, scores, weights, metric=p["metric"])
        best = scores[p["metric"]].idxmax()
        return {"sources": float(len(scores)), f"weight/{best}": float(weights[best]),
                "seconds": float(scores.attrs.get("seconds", 0.0))}

    def read(self, run_dir: str | Path) -> dict[str, Any] | None:
        return load_selection(run_dir)


SELECTION_FILE = "source_selection.json"


def selection_path(folder: str | Path) -> Path:
    return Path(folder) / "artifacts" / SELECTION_FILE


def save_selection(folder: str | Path, scores: pd.DataFrame, weights: Mapping[str, float] | None = None,
                   realised: Mapping[str, float] | None = None, methods: Mapping[str, Sequence[float]] | None = None,
                   metric: str | None = None) -> Path:
    """Write a run's source-selection results (atomically) where the report section finds them."""
    path = selection_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    def plain(values: Mapping[str, Any] | None) -> dict[str, Any]:  # dict or Series (e.g. source_weights)
        return {} if values is None else {str(k): v for k, v in dict(values).items()}

    data = {"scores": {str(s): {str(m): float(v) for m, v in row.items()} for s, row in scores.iterrows()},
            "weights": {k: float(v) for k, v in plain(weights).items()},
            "realised": {k: float(v) for k, v in plain(realised).items()},
            "methods": {k: [float(a) for a in v] for k, v in plain(methods).items()}, "metric": metric}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    return path


def load_selection(folder: str | Path) -> dict[str, Any] | None:
    """What ``save_selection`` wrote (scores as a DataFrame), or None when the run has none or it is unreadable."""
    path = selection_path(folder)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        data["scores"] = pd.DataFrame.from_dict(data["scores"], orient="index")
    except (OSError, ValueError, KeyError):
        return None
    return data


