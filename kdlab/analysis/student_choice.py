"""Training-free student choice (the idea of DisWOT: Dong et al., "DisWOT: Student Architecture Search for
Distillation WithOut Training", CVPR 2023): rank candidate students for a teacher before training any of
them, by how close their randomly initialised representations already are to the teacher's on one batch.

Two scores per candidate, averaged over a few random initialisations:

- ``relation``: DisWOT's sample-relation distance, || R(F_t) - R(F_s) ||^2 / B^2 with R(F) = F F^T
  with rows L2-normalised (B x B, comparable across feature sizes); lower is better;
- ``cka``: debiased linear CKA of the same features (the batch is small relative to the features, so the
  biased estimator would be inflated); higher is better.

DisWOT's second term (Grad-CAM semantic similarity) is not implemented here.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from kdlab.analysis.cka import linear_cka
from kdlab.data.base import ArrayDataset
from kdlab.errors import ConfigError
from kdlab.models import create
from kdlab.models.taps import FeatureTaps, chosen_layers

METRICS = ("relation", "cka")
Candidate = str | Mapping[str, Any] | Callable[[], nn.Module]


def relation_matrix(features: torch.Tensor) -> torch.Tensor:
    """R(F) = F F^T with each row scaled to unit L2 norm (float64), F flattened to (B, D)."""
    f = features.reshape(features.shape[0], -1).double()
    g = f @ f.T
    return g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)


def relation_distance(teacher_features: torch.Tensor, student_features: torch.Tensor) -> float:
    """Mean squared difference of the two relation matrices (0 when the sample relations coincide)."""
    rt, rs = relation_matrix(teacher_features), relation_matrix(student_features)
    return float((rt - rs).square().mean())


@torch.no_grad()
def _features(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    was = model.training
    model.eval()
    try:
        with FeatureTaps(model, [layer], clone=True, detach=True) as taps:
            model(x)
            return taps.pop()[layer].flatten(1).double()
    finally:
        model.train(was)


def _builder(label: str, cand: Candidate, data: ArrayDataset) -> tuple[Callable[[], nn.Module], str]:
    if callable(cand):
        return cand, getattr(cand, "__name__", label)
    if isinstance(cand, str):
        cand = {"name": cand}
    if not isinstance(cand, Mapping) or "name" not in cand:
        raise ConfigError(f"candidates[{label!r}]: expected a model name, {{'name': ..., 'params': {{...}}}} "
                          "or a function returning an nn.Module")
    name, params = str(cand["name"]), dict(cand.get("params") or {})
    create(name, data.num_classes, data.in_shape, **params)  # fail now on a bad name or parameter
    return (lambda: create(name, data.num_classes, data.in_shape, **params)), name


def rank_students(teacher: nn.Module, candidates: Mapping[str, Candidate], data: ArrayDataset,
                  n_samples: int = 128, seeds: Sequence[int] = (0, 1, 2), metric: str = "relation",
                  teacher_layer: str | None = None, student_kind: str = "embedding") -> pd.DataFrame:
    """Rank ``candidates`` (label -> model name / ``{'name', 'params'}`` / builder) for ``teacher``.

    Uses the first ``n_samples`` samples of ``data``, the teacher's declared ``embedding`` tap (or
    ``teacher_layer``) and each student's ``student_kind`` tap, at initialisation with each of ``seeds``.
    Returns one row per candidate sorted best first: relation distance and CKA (means over seeds, with
    the std of the chosen metric), parameter count and ``rank`` (1 = best by ``metric``).
    """
    if metric not in METRICS:
        raise ConfigError(f"metric: {metric!r} is not one of {list(METRICS)}")
    if not candidates:
        raise ConfigError("candidates: give at least one student")
    if n_samples < 4 or not seeds:
        raise ConfigError("n_samples must be >= 4 and seeds non-empty")
    x = data.x[:n_samples]
    t_layer = teacher_layer or chosen_layers(teacher, None, "embedding")[0]
    f_t = _features(teacher, x.to(next(teacher.parameters()).device), t_layer).cpu()
    rows = []
    for label, cand in candidates.items():
        build, model_name = _builder(label, cand, data)
        rel, sim, n_params = [], [], 0
        for seed in seeds:
            torch.manual_seed(int(seed))
            student = build()
            n_params = sum(p.numel() for p in student.parameters())
            f_s = _features(student, x, chosen_layers(student, None, student_kind)[0])
            rel.append(relation_distance(f_t, f_s))
            sim.append(linear_cka(f_t, f_s, debiased=True))
        chosen = rel if metric == "relation" else sim
        rows.append({"candidate": label, "model": model_name, "params": n_params,
                     "relation": float(np.mean(rel)), "cka": float(np.mean(sim)), "std": float(np.std(chosen))})
    df = pd.DataFrame(rows)
    df = df.sort_values(metric, ascending=metric == "relation", kind="stable").reset_index(drop=True)
    df["rank"] = np.arange(1, len(df) + 1)
    df.attrs.update(metric=metric, teacher_layer=t_layer, n_samples=len(x), seeds=list(seeds))
    return df
