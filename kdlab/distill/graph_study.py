"""The GNN-to-MLP study: train a GNN teacher and MLP students (plain, vanilla KD, FF-G2M) on a graph per seed
and measure each one's accuracy and the graph-frequency energy of its predictions
(``kdlab.analysis.graph_frequency``)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from kdlab.analysis.graph_frequency import compare_models
from kdlab.data.graphs import load_graph
from kdlab.distill.graph import GraphTrainConfig, train_graph
from kdlab.models.gnn import create_graph_model

STUDY_STUDENTS = {"MLP": ("graph_vanilla", {}), "KD-MLP": ("g2m_kd", {}), "FF-G2M-MLP": ("ff_g2m", {})}


def distillation_study(graph: str = "csbm", seeds: Sequence[int] = (0,), teacher: str = "gcn", epochs: int = 200,
                       students: Mapping[str, tuple[str, dict[str, Any]]] | None = None, cutoff: float = 1.0,
                       progress: Any = None, **graph_params: Any) -> pd.DataFrame:
    """Train a GNN teacher and MLP students (plain, vanilla KD, FF-G2M) on graph ``graph`` for each seed and
    measure each model's test accuracy and graph-frequency energy of its predictions
    (``kdlab.analysis.graph_frequency.compare_models``; ``summarize_study`` there averages over seeds).

    ``students``: label -> (graph method, params) (default ``STUDY_STUDENTS``). Returns one row per seed and
    model: seed, model, test_acc, val_acc, low, high, high_fraction, dirichlet, hf_similarity (to the teacher;
    ``val_acc`` lets a caller pick among students by validation, never test, accuracy). The same
    seeds give the same numbers: each model's initial weights come from its seed (all students start alike).
    """
    students = dict(students or STUDY_STUDENTS)
    rows = []
    total, done = len(seeds) * (1 + len(students)), 0
    for seed in seeds:
        g = load_graph(graph, seed=seed, **graph_params)
        cfg = GraphTrainConfig(epochs=epochs, seed=seed)
        t_label = f"{teacher.upper()} teacher"
        res = {t_label: train_graph("graph_vanilla", create_graph_model(teacher, g.num_features, g.num_classes,
                                                                        seed=seed), g, config=cfg)}
        done += 1
        if progress is not None:
            progress(done, total, f"seed {seed}: teacher")
        for label, (method, params) in students.items():
            model = create_graph_model("mlp", g.num_features, g.num_classes, seed=seed)  # all start alike
            t_logits = res[t_label].logits if method != "graph_vanilla" else None
            res[label] = train_graph(method, model, g, teacher=t_logits, config=cfg, **params)
            done += 1
            if progress is not None:
                progress(done, total, f"seed {seed}: {label}")
        energy = compare_models(g, {k: r.logits for k, r in res.items()}, reference=t_label, cutoff=cutoff)
        energy.insert(0, "seed", seed)
        energy.insert(2, "test_acc", [res[m].test_acc for m in energy["model"]])
        energy.insert(3, "val_acc", [res[m].val_acc for m in energy["model"]])
        rows.append(energy)
    return pd.concat(rows, ignore_index=True)
