"""The ``graph_kd`` job: the GNN-to-MLP study on a CSBM graph (GCN teacher vs MLP, KD-MLP and FF-G2M-MLP).

Its file is ``artifacts/graph_energy.csv`` (``summarize_study``'s table: mean and std over seeds of each model's
test accuracy and graph-frequency energies; ``kdlab.jobs.frequency`` writes and reads it); ``read`` returns it.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from kdlab.analysis.frequency import FrequencyArtifacts
from kdlab.analysis.graph_frequency import summarize_study
from kdlab.distill.graph_study import distillation_study
from kdlab.jobs.frequency import load, save
from kdlab.registry import Param
from kdlab.runs.job import Job, JobContext, register_job


def graph_table(table: pd.DataFrame) -> pd.DataFrame:
    """The study summary as shown: accuracy and energy columns as ``mean ± std``."""
    out = pd.DataFrame({"model": table["model"]})
    for col in ("test_acc", "high_fraction", "hf_similarity"):
        out[col] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(table[col], table[f"{col}_std"], strict=True)]
    return out


@register_job("graph_kd")
class GraphKDJob(Job):
    """GCN teacher vs MLP, KD-MLP and FF-G2M-MLP students on a CSBM graph, averaged over seeds.

    The defaults are the regime of citation graphs: more features than nodes (the MLP can fit every node's
    target) and a low degree, where FF-G2M's smoothed targets pay off; with few features (32, signal 0.5,
    degree 8) the MLP is feature-limited and vanilla KD does better (BENCHMARKS.md)."""

    params = {
        "homophily": Param(0.8, "CSBM edge homophily", float, 0.0, 1.0),
        "avg_degree": Param(4.0, "CSBM expected node degree", float, 0.5, 50.0),
        "features": Param(1024, "CSBM node feature dimension", int, 1, 4096),
        "signal": Param(0.09, "class-mean distance per feature (32 features: about 0.5)", float, 0.0, 5.0),
        "nodes": Param(1000, "nodes of the graph", int, 20, 100_000),
        "seeds": Param(1, "graphs (seeds 0..N-1) to average over", int, 1, 20),
        "epochs": Param(200, "training epochs of every model", int, 1, 5000),
    }

    def title(self, params: Mapping[str, Any]) -> str:
        return f"graph_kd-h{params.get('homophily', 0.8):g}"

    def run(self, ctx: JobContext) -> dict[str, float]:
        p = ctx.params
        rows = distillation_study("csbm", seeds=list(range(p["seeds"])), epochs=p["epochs"], progress=ctx.progress,
                                  nodes=p["nodes"], homophily=p["homophily"], signal=p["signal"],
                                  features=p["features"], avg_degree=p["avg_degree"])
        table = summarize_study(rows)
        save(FrequencyArtifacts(graph=table), ctx.run_dir)
        return {f"test_acc/{m}": float(a) for m, a in zip(table["model"], table["test_acc"], strict=True)}

    def read(self, run_dir: str | Path) -> pd.DataFrame | None:
        return load(run_dir).graph
