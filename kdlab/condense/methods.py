"""The registry of condensation methods (the timm / mdistiller pattern): one small module per method, one contract.

A method is ``fn(job, params) -> Condensed`` registered with ``@register_condenser(name, params={...})``;
``job`` is the ``kdlab.condense.distill.Condensation`` in progress (normalised real data, generator, networks,
progress reporting, the learning loop) and ``params`` its declared parameters, validated from
``CondenseConfig.method_params``. ``learned`` methods optimise pixels and can resume from a snapshot
(``job.start``); the others select or assemble images once.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from kdlab.registry import Param, Registry

CONDENSERS = Registry("condensation method")


@dataclass
class Condensed:
    """What a method returns: normalised images ``x`` (N, C, H, W), hard labels ``y`` (N,), optional soft labels
    (N, K), facts for the set's ``meta`` and extra arrays saved with it (``SyntheticSet.extras``)."""

    x: torch.Tensor
    y: torch.Tensor
    soft: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)


def register_condenser(name: str, params: Mapping[str, Param] | None = None, *, learned: bool,
                       family: str = "") -> Callable[[Callable[..., Condensed]], Callable[..., Condensed]]:
    """Register ``fn(job, params) -> Condensed`` as condensation method ``name`` (``learned``: optimises pixels,
    resumable from a snapshot; ``family``: a short tag for tables, e.g. 'matching', 'selection')."""
    return CONDENSERS.register(name, params or {}, learned=learned, family=family)


def method_names() -> tuple[str, ...]:
    """Every registered method, in registration order of the modules (dm, datadam, dc, random, herding, ...)."""
    return tuple(CONDENSERS.in_order())


def is_learned(name: str) -> bool:
    """Whether method ``name`` optimises pixels (and so resumes from snapshots)."""
    return bool(CONDENSERS.entry(name, where="condense.method").tags.get("learned"))
