"""The studies of distillation under shift by name, each ``study(zoo, seed, scale, progress, **options) -> dict``
(JSON-ready: ``"table"`` rows, a ``"summary"`` of headline numbers, and its own fields). A job, the bench and a
notebook run them the same way; modules are imported when their study runs.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from kdlab.errors import unknown

#: name -> (module, function, what it measures)
STUDIES: dict[str, tuple[str, str, str]] = {
    "benchmark": ("kdlab.shift.benchmark", "study_benchmark",
                  "8 shifted few-label targets: scratch, fine-tune, FixMatch, uniform, DistillNearest, "
                  "DistillWeighted; metrics' Kendall taus"),
    "meta_dmoe": ("kdlab.shift.meta_dmoe", "study_meta_dmoe",
                  "Meta-DMoE: domain experts, meta-distilled aggregator, test-time adaptation, leave-one-domain-out"),
    "complementary": ("kdlab.shift.complementary", "study_complementary",
                      "complementary knowledge transfer between every pair of the zoo (Fantastic Gains)"),
    "source_free": ("kdlab.shift.source_free", "study_source_free",
                    "source-free adaptation by pseudo-label distillation (GLC, LPLD), with unknown classes"),
    "kd3": ("kdlab.shift.web_kd", "study_kd3", "KD3: distillation on a shifted, noisily labelled web pool"),
    "hard": ("kdlab.shift.hard", "study_hard", "HARD: learned hard augmentations; accuracy on unseen shifts"),
}


def study_fn(name: str) -> Callable[..., dict[str, Any]]:
    """The runner of study ``name``."""
    if name not in STUDIES:
        raise unknown("study", str(name), list(STUDIES), where="study")
    module, fn, _ = STUDIES[name]
    return getattr(importlib.import_module(module), fn)
