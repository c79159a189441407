"""Optimisers and learning-rate schedules by name, and ``OPTIM``: the one declaration of the optimisation
settings (name, lr, momentum, weight_decay, schedule, epochs, batch_size, grad_clip).

``OPTIM`` is what the spec's ``optim`` section (``kdlab.runs.spec.OptimSpec``, its pydantic fields built from
these ``Param``s), the trainer's ``TrainConfig`` (defaults and validation) and the launcher form
(``kdlab.ui.forms.optim_fields``) are made from: a default, bound or doc changed here changes all three.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

from kdlab.errors import ConfigError
from kdlab.registry import Param

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "none")

#: the optimisation settings, in spec order (the order is that of the spec's YAML; keep it)
OPTIM: dict[str, Param] = {
    "name": Param("sgd", "optimiser: SGD (with momentum), Adam or AdamW", str, choices=OPTIMIZERS),
    "lr": Param(0.05, "learning rate (peak, before the schedule)", float, 0.0, 10.0, low_open=True),
    "momentum": Param(0.9, "SGD momentum (Adam/AdamW ignore it)", float, 0.0, 1.0, high_open=True),
    "weight_decay": Param(5e-4, "weight decay", float, 0.0, 1.0),
    "schedule": Param("cosine", "per-epoch schedule: cosine to 0, step (x0.1 at 1/2 and 3/4), none", str,
                      choices=SCHEDULES),
    "epochs": Param(10, "training epochs", int, 1, 10_000),
    "batch_size": Param(128, "batch size (global: split over the processes of a DDP run)", int, 1, 65_536),
    "grad_clip": Param(None, "clip the gradient norm to this (empty: no clipping)", float, 0.0, None, low_open=True),
}


def build_optimizer(params: Iterable[torch.nn.Parameter], name: str, lr: float, momentum: float = 0.9,
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """SGD (Nesterov-free, with momentum), Adam or AdamW over ``params``."""
    params = list(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError.at("optim.name", f"{name!r} is not one of {list(OPTIMIZERS)}", OPTIMIZERS)


def build_schedule(opt: torch.optim.Optimizer, name: str, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: cosine to 0, step (x0.1 at 1/2 and 3/4 of training), or constant."""
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    if name == "step":
        milestones = sorted({max(1, epochs // 2), max(1, (3 * epochs) // 4)})
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    if name == "none":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _e: 1.0)
    raise ConfigError.at("optim.schedule", f"{name!r} is not one of {list(SCHEDULES)}", SCHEDULES)
