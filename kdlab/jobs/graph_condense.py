"""The ``graph_condense`` job: Mirage (Gupta et al., ICLR 2024) distils a graph-classification set into frequent
computation-tree sets; GCN and GIN trained on the full training split and on the distilled set are compared.

Its files, under the run folder's ``artifacts/``: ``mirage_set.npz`` (the ``MirageSet``), ``mirage_eval.csv``
(one row per model and training data: test accuracy, training seconds, nodes, bytes, compression) and
``mirage_summary.json`` (the set's sizes, coverage of the test graphs' trees, distillation seconds). ``read``
returns them as ``MirageArtifacts``.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kdlab.condense.mirage import MirageSet, coverage, distill_graphs, evaluate_mirage
from kdlab.data.graph_sets import GRAPH_SETS, load_graph_set
from kdlab.errors import ConfigError
from kdlab.models.graph_classifiers import GRAPH_CLASSIFIERS
from kdlab.registry import Param
from kdlab.runs.job import Job, JobContext, register_job

SET_FILE, EVAL_FILE, SUMMARY_FILE = "mirage_set.npz", "mirage_eval.csv", "mirage_summary.json"


@dataclass
class MirageArtifacts:
    """What a ``graph_condense`` run wrote (parts not written yet stay None/empty)."""

    mirage_set: MirageSet | None = None
    table: pd.DataFrame | None = None
    summary: dict[str, Any] = field(default_factory=dict)


@register_job("graph_condense")
class GraphCondenseJob(Job):
    """Mirage on a graph-classification set: the distilled tree-sets, then GCN/GIN on full vs distilled data."""

    params = {
        "dataset": Param("motifs", "graph set (kdlab.data.graph_sets: motifs, molecules or a registered one)", str),
        "dataset_params": Param({}, "the graph set's parameters", dict),
        "layers": Param(2, "GNN layers = depth of the computation trees", int, 1, 6),
        "threshold": Param(0.1, "share of a class's graphs a tree-set must occur in", float, 0.0, 1.0, low_open=True),
        "max_sets": Param(256, "most tree-sets kept per class, the most frequent (0: no cap)", int, 0, 1_000_000),
        "exclusive": Param(False, "drop tree-sets that are also frequent in another class", bool),
        "models": Param(["gcn", "gin"], "graph classifiers trained on full vs distilled data", list),
        "epochs": Param(100, "training epochs of every model", int, 1, 10_000),
        "seed": Param(0, "seed of the graph set, its split, the mining's ties and the models", int, 0, 2**31 - 1),
    }

    def check(self, params: Mapping[str, Any], store: Any) -> dict[str, Any]:
        p = dict(params)
        GRAPH_SETS.entry(p["dataset"], where="params.dataset")
        p["dataset_params"] = GRAPH_SETS.validate(p["dataset"], p["dataset_params"], where="params.dataset_params")
        if not p["models"]:
            raise ConfigError.at("params.models", f"name at least one of {GRAPH_CLASSIFIERS.names()}")
        for i, m in enumerate(p["models"]):
            GRAPH_CLASSIFIERS.entry(m, where=f"params.models[{i}]")
        return p

    def title(self, params: Mapping[str, Any]) -> str:
        return f"mirage-{params.get('dataset', '')}"[:200]

    def run(self, ctx: JobContext) -> dict[str, float]:
        p = self.check(ctx.params, None)
        data = load_graph_set(p["dataset"], seed=p["seed"], **p["dataset_params"])
        train, val, test = (data.split(s) for s in ("train", "val", "test"))
        ctx.progress(0, 1 + len(p["models"]), "mining frequent computation trees")
        mset = distill_graphs(train, layers=p["layers"], threshold=p["threshold"], max_sets=p["max_sets"] or None,
                              exclusive=p["exclusive"], seed=p["seed"])
        mset.save(ctx.artifact(SET_FILE))
        summary = {**mset.summary(), "coverage_test": coverage(mset, test), "distill_seconds": mset.meta["seconds"],
                   "distinct_trees": mset.meta["distinct_trees"], "dataset": data.summary()}
        rows = []
        for k, model in enumerate(p["models"]):
            ctx.progress(1 + k, 1 + len(p["models"]), f"training {model} on full and distilled data")
            ctx.check_cancel()
            rows.append(evaluate_mirage(train, test, mset, models=[model], epochs=p["epochs"], seed=p["seed"],
                                        val_set=val))
        table = pd.concat(rows, ignore_index=True)
        table.to_csv(ctx.artifact(EVAL_FILE), index=False)
        ctx.artifact(SUMMARY_FILE).write_text(json.dumps(summary, indent=1, default=float))
        ctx.progress(1 + len(p["models"]), 1 + len(p["models"]), "done")
        out = {f"test_acc/{r.model}/{r.data}": float(r.test_acc) for r in table.itertuples()}
        return {**out, "compression": float(summary.get("compression", 0.0)), "coverage": summary["coverage_test"]}

    def read(self, run_dir: str | Path) -> MirageArtifacts | None:
        folder = Path(run_dir) / "artifacts"
        if not (folder / SET_FILE).is_file():
            return None
        art = MirageArtifacts(MirageSet.load(folder / SET_FILE))
        if (folder / EVAL_FILE).is_file():
            art.table = pd.read_csv(folder / EVAL_FILE)
        if (folder / SUMMARY_FILE).is_file():
            art.summary = json.loads((folder / SUMMARY_FILE).read_text())
        return art
