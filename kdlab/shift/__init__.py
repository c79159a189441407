"""Distillation under distribution shift: a benchmark of shifted few-label targets, mixtures of domain experts
(Meta-DMoE), complementary knowledge between any two models (Fantastic Gains), source-free adaptation by
pseudo-label distillation (GLC, LPLD), web-data distillation (KD3) and hard augmentations (HARD).

Every study is ``study_fn(name)(zoo, seed, scale, progress)`` (``STUDIES`` lists them); the ``shift`` job runs them
in the background. Modules: ``targets``, ``benchmark``, ``meta_dmoe``, ``complementary``, ``source_free``,
``web_kd``, ``hard``.
"""
from __future__ import annotations

from kdlab.shift.benchmark import kendall_taus, study_benchmark, target_study
from kdlab.shift.complementary import PairGains, complementary_knowledge, pair_gains, transfer
from kdlab.shift.hard import AugBounds, Augmenter, train_hard
from kdlab.shift.meta_dmoe import MetaDMoE, uniform_mixture
from kdlab.shift.source_free import adapt_glc, adapt_lpld, glc_pseudo_labels, open_set_metrics
from kdlab.shift.studies import STUDIES, study_fn
from kdlab.shift.targets import BENCHMARK_TARGETS, TargetDef, benchmark_target, list_targets
from kdlab.shift.web_kd import make_web_pool, select_instances, train_web

__all__ = [
    "BENCHMARK_TARGETS", "STUDIES", "AugBounds", "Augmenter", "MetaDMoE", "PairGains", "TargetDef", "adapt_glc",
    "adapt_lpld", "benchmark_target", "complementary_knowledge", "glc_pseudo_labels", "kendall_taus",
    "list_targets", "make_web_pool", "open_set_metrics", "pair_gains", "select_instances", "study_benchmark",
    "study_fn", "target_study", "train_hard", "train_web", "transfer", "uniform_mixture",
]
