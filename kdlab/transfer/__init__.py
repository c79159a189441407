"""Source selection for transfer on a budget (Borup et al. 2023): transferability metrics, a zoo of source
models, ranking and relevance weights, source teachers, and the DistillNearest/DistillWeighted harness.

Importing this package registers the ``"zoo:<source>"`` model names (``kdlab.transfer.zoo_model``).
"""
from __future__ import annotations

from kdlab.transfer.harness import METHODS, Target, fit_teachers, make_target, run_method
from kdlab.transfer.metrics import (
    METRICS,
    gbc,
    hscore,
    knn_accuracy,
    leep,
    linear_probe,
    logme,
    nce,
    transrate,
)
from kdlab.transfer.selection import (
    SourceFeatures,
    best_source,
    rank_sources,
    source_features,
    source_weights,
)
from kdlab.transfer.teachers import SourceEnsemble, SourceTeacher, extract, fit_head, fit_teacher
from kdlab.transfer.zoo import BUILTIN_SOURCES, WIDE_SOURCES, SourceCard, SourceDef, SourceZoo

__all__ = [
    "BUILTIN_SOURCES", "METHODS", "METRICS", "SourceCard", "SourceDef", "SourceEnsemble", "SourceFeatures",
    "SourceTeacher", "SourceZoo", "Target", "WIDE_SOURCES", "best_source", "extract", "fit_head", "fit_teacher",
    "fit_teachers", "gbc", "hscore", "knn_accuracy", "leep", "linear_probe", "logme", "make_target", "nce",
    "rank_sources", "run_method", "source_features", "source_weights", "transrate",
]
