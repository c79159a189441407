"""The shift benchmark: on each of several shifted few-label targets, rank the zoo with every metric, measure each
source's single-source accuracy, and train every method of the comparison (scratch, fine-tune, FixMatch, uniform
multi-teacher, DistillNearest, DistillWeighted) the same way; Kendall tau of each metric's ranking against the
single-source accuracies says which metric picks sources well under shift.

Each source's features on the labelled images are extracted once and serve every metric and the fitting of its
teacher head; a source's single-source accuracy is the accuracy of that teacher (frozen source + fitted head) on
the target's test split.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kdlab.errors import ConfigError
from kdlab.shift.targets import benchmark_target, benchmark_targets
from kdlab.transfer.harness import METHODS, Target, fit_teachers, run_method
from kdlab.transfer.metrics import METRICS
from kdlab.transfer.selection import rank_sources, source_features, source_weights
from kdlab.transfer.teachers import accuracy
from kdlab.transfer.zoo import SourceZoo

Progress = Callable[[int, int, str], None]


def kendall_taus(scores: Any, single: dict[str, float]) -> dict[str, float]:
    """Kendall tau of every metric's scores against the single-source accuracies (NaN when either is constant)."""
    from scipy.stats import kendalltau  # scipy.stats takes a while to import; only the benchmark needs it
    acc = [single[s] for s in scores.index]
    return {m: float(kendalltau(scores[m].to_numpy(), acc).statistic) for m in scores.columns}


def target_study(zoo: SourceZoo, target: Target, methods: Sequence[str] = METHODS, metric: str = "linear_probe",
                 temperature: float = 0.5, epochs: int = 20, seed: int = 0,
                 sources: Sequence[str] | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Scores, single-source accuracies, Kendall taus and every method's test accuracy on one target."""
    t0 = time.perf_counter()
    names = zoo.check(sources)
    feats = source_features(zoo, target.labelled, names)
    scores = rank_sources(zoo, target.labelled, features=feats)
    teachers = fit_teachers(zoo, target, names, features=feats)
    single = {n: accuracy(t, target.test) for n, t in teachers.items()}
    rank_s = time.perf_counter() - t0
    accs, picked = {}, {}
    for i, m in enumerate(methods):
        if progress:
            progress(i, len(methods), f"{target.name}: {m}")
        r = run_method(m, zoo, target, scores, metric, temperature, epochs=epochs, seed=seed, teachers=teachers)
        accs[m], picked[m] = float(r["test_acc"]), r["sources"] if m in ("nearest", "finetune") else []
    return {"target": target.name, "classes": target.labelled.num_classes, "labelled": len(target.labelled),
            "unlabelled": len(target.unlabelled), "scores": {s: {k: float(v) for k, v in row.items()}
                                                             for s, row in scores.iterrows()},
            "single": single, "taus": kendall_taus(scores, single), "methods": accs, "picked": picked,
            "weights": {k: float(v) for k, v in source_weights(scores, temperature, metric).items()},
            "spread": float(max(single.values()) - min(single.values())), "rank_seconds": rank_s,
            "seconds": time.perf_counter() - t0}


def study_benchmark(zoo: SourceZoo, seed: int = 0, scale: float = 1.0, progress: Progress | None = None,
                    targets: Sequence[str] | None = None, labels_per_class: int = 5, metric: str = "linear_probe",
                    temperature: float = 0.5, methods: Sequence[str] = METHODS,
                    sources: Sequence[str] | None = None) -> dict[str, Any]:
    """Every benchmark target (``targets``, default all eight) at one seed; ``scale`` multiplies the 20 epochs.

    Returns ``{"study": "benchmark", "seed", "targets": [target_study dicts], "table": rows (target x method
    accuracy), "summary": {"mean/<method>": accuracy averaged over targets, "tau/<metric>": mean Kendall tau,
    "weighted_minus_nearest", "weighted_minus_fixmatch"}}``.
    """
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ConfigError(f"methods: {bad or '[]'} are not methods of the benchmark; valid: {', '.join(METHODS)}")
    defs = benchmark_targets(targets)
    epochs = max(1, round(20 * scale))
    out = []
    for i, d in enumerate(defs):
        def step(j: int, n: int, msg: str, i: int = i) -> None:
            if progress:
                progress(i * n + j, len(defs) * n, msg)

        out.append(target_study(zoo, benchmark_target(d, labels_per_class, seed), methods, metric, temperature,
                                epochs, seed, sources, step))
    if progress:
        progress(1, 1, f"{len(defs)} targets done")
    table = [{"target": t["target"], **{m: t["methods"][m] for m in methods}} for t in out]
    summary = {f"mean/{m}": float(np.mean([t["methods"][m] for t in out])) for m in methods}
    summary.update({f"tau/{k}": float(np.nanmean([t["taus"][k] for t in out])) if any(
        math.isfinite(t["taus"][k]) for t in out) else math.nan for k in METRICS})
    for base in ("nearest", "fixmatch"):
        if "weighted" in methods and base in methods:
            summary[f"weighted_minus_{base}"] = summary["mean/weighted"] - summary[f"mean/{base}"]
    return {"study": "benchmark", "seed": seed, "labels_per_class": labels_per_class, "metric": metric,
            "temperature": temperature, "epochs": epochs, "targets": out, "table": table, "summary": summary}
