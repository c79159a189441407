"""Optimisers and learning-rate schedules by name (the choices a spec may name)."""
from __future__ import annotations

from collections.abc import Iterable

import torch

from kdlab.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "none")


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
    raise ConfigError(f"optim.name: {name!r} is not one of {list(OPTIMIZERS)}")


def build_schedule(opt: torch.optim.Optimizer, name: str, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: cosine to 0, step (x0.1 at 1/2 and 3/4 of training), or constant."""
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    if name == "step":
        milestones = sorted({max(1, epochs // 2), max(1, (3 * epochs) // 4)})
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    if name == "none":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _e: 1.0)
    raise ConfigError(f"optim.schedule: {name!r} is not one of {list(SCHEDULES)}")
