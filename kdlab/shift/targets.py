"""The shift benchmark's target tasks: few-label tasks built from the shipped data by domain shifts, their
combinations, label subsets, relabellings and digits at another size, so the best source differs per target.

``benchmark_target(name, labels_per_class, seed)`` gives a ``kdlab.transfer.Target`` (labelled, unlabelled,
val, test, all under the same shifts); ``list_targets()`` describes them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kdlab.data.api import load, shifted
from kdlab.data.base import ArrayDataset
from kdlab.data.splits import stratified_subset
from kdlab.errors import ConfigError, unknown
from kdlab.transfer.harness import Target


@dataclass(frozen=True)
class TargetDef:
    """A target task: a shipped dataset, the shifts applied to every split, and what that makes it."""

    name: str
    shifts: tuple = ()
    doc: str = ""
    dataset: str = "digits"
    params: dict[str, Any] = field(default_factory=lambda: {"size": 28})


FIVE = {"classes": [0, 1, 2, 3, 4]}
BENCHMARK_TARGETS: tuple[TargetDef, ...] = (
    TargetDef("digits", (), "scikit-learn's 8x8 digits at 28 px: another dataset of the sources' classes"),
    TargetDef("digits_invert", (("invert", 1.0),), "digits, photographic negative"),
    TargetDef("digits_rot90", (("rotate", 1.0),), "digits turned a quarter"),
    TargetDef("digits_blur_noise", (("blur", 0.8), ("noise", 0.5)), "digits blurred, then noisy"),
    TargetDef("digits_edge_invert", (("edge", 1.0), ("invert", 1.0)), "digits' edges, inverted"),
    TargetDef("digits_small", (("zoom", 0.8),), "digits at 60% of the size, in the same frame"),
    TargetDef("digits_parity_rot45", (("rotate", 0.5), ("relabel", 0.5, {"mode": "parity"})),
              "even/odd of digits turned 45 degrees (a relabelled task)"),
    TargetDef("digits_0to4_invert", (("subset", 0.0, FIVE), ("invert", 1.0)), "digits 0-4 only, inverted"),
)
TARGETS = {t.name: t for t in BENCHMARK_TARGETS}


def list_targets() -> pd.DataFrame:
    """One row per benchmark target: name, dataset, shifts, what it is."""
    rows = [{"target": t.name, "dataset": t.dataset,
             "shifts": ", ".join(f"{s[0]}({s[1]:g})" for s in t.shifts) or "none", "what": t.doc}
            for t in BENCHMARK_TARGETS]
    return pd.DataFrame(rows)


def target_def(name: str | TargetDef) -> TargetDef:
    """The definition of benchmark target ``name`` (a ``TargetDef`` passes through)."""
    if isinstance(name, TargetDef):
        return name
    if name not in TARGETS:
        raise unknown("target", str(name), list(TARGETS), where="target")
    return TARGETS[name]


def target_split(name: str | TargetDef, split: str, seed: int = 0) -> ArrayDataset:
    """One split of a benchmark target, shifted (deterministic given ``seed``)."""
    t = target_def(name)
    data = load(t.dataset, split=split, seed=seed, **t.params)
    out = shifted(data, list(t.shifts), split=split, seed=seed) if t.shifts else data
    out.name = t.name
    return out


def benchmark_target(name: str | TargetDef, labels_per_class: int = 10, seed: int = 0) -> Target:
    """Target ``name`` with about ``labels_per_class`` labels per class (stratified, chosen by ``seed``); the
    rest of its training images form the unlabelled pool."""
    t = target_def(name)
    full = target_split(t, "train", seed)
    n = labels_per_class * full.num_classes
    if labels_per_class < 1 or n >= len(full):
        raise ConfigError(f"labels_per_class: {labels_per_class} x {full.num_classes} classes must be below the "
                          f"{len(full)} training images of target {t.name!r}")
    picked = stratified_subset(full.y.numpy(), n, seed)
    rest = np.setdiff1d(np.arange(len(full)), picked)
    return Target(t.name, full.subset(picked), full.subset(rest), target_split(t, "val", seed),
                  target_split(t, "test", seed), seed, {"benchmark": t.name})


def benchmark_targets(names: Sequence[str] | None = None) -> list[TargetDef]:
    """The definitions of ``names`` (default: all eight), validated."""
    return [target_def(n) for n in (names if names is not None else list(TARGETS))]
