"""Training denoisers (the teachers, and students trained without distillation) and keeping teachers cached.

The objective is the v-prediction MSE on uniformly drawn timesteps; labels are dropped to the null label with
probability ``cond_drop`` so one network gives conditional and unconditional predictions (classifier-free
guidance, Ho & Salimans 2022). The weights kept are an exponential moving average of the trained ones (as in
DDPM and every diffusion codebase since): it is markedly better than the last iterate after short training.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from kdlab.diffusion.data import DIFFUSION_DATA, DiffusionData
from kdlab.diffusion.models import create_denoiser, load_denoiser, save_denoiser
from kdlab.diffusion.schedule import NoiseSchedule, T
from kdlab.paths import cache_dir, cached_model

Progress = Callable[[int, int, float], None]  # (step, total, loss)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model`` (parameters; buffers copied)."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


def drop_labels(y: Tensor | None, num_classes: int, p: float, generator: torch.Generator) -> Tensor | None:
    """Labels with a fraction ``p`` replaced by the null label (classifier-free guidance training)."""
    if y is None or not num_classes:
        return None
    drop = torch.rand(len(y), generator=generator, device=y.device) < p
    return torch.where(drop, torch.full_like(y, num_classes), y)


def denoising_loss(net: nn.Module, schedule: NoiseSchedule, x0: Tensor, y: Tensor | None,
                   generator: torch.Generator) -> Tensor:
    """The v-prediction MSE at uniformly drawn timesteps (the diffusion training loss)."""
    t = torch.randint(0, T, (len(x0),), generator=generator, device=x0.device).float()
    eps = torch.randn(x0.shape, generator=generator, device=x0.device)
    return (net(schedule.add_noise(x0, eps, t), t, y) - schedule.v_target(x0, eps, t)).square().mean()


def train_denoiser(net: nn.Module, data: DiffusionData, schedule: NoiseSchedule, steps: int = 4000,
                   batch_size: int = 256, lr: float = 1e-3, cond_drop: float = 0.1, ema: float = 0.999,
                   seed: int = 0, device: str = "cpu", progress: Progress | None = None) -> nn.Module:
    """Train ``net`` on ``data`` (conditional when it has labels); returns the EMA copy, in eval mode."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = net.to(device).train()
    avg = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    warm = max(1, min(200, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warm))
    x_all, y_all = data.train, data.train_labels if data.num_classes else None
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x_all), (batch_size,), generator=g)
        x0 = x_all[idx].to(device)
        y = drop_labels(y_all[idx].to(device), data.num_classes, cond_drop, g) if y_all is not None else None
        loss = denoising_loss(net, schedule, x0, y, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema_update(avg, net, min(ema, (1 + step) / (10 + step)))
        if progress is not None:
            progress(step, steps, float(loss.detach()))
    return avg.eval()


TEACHER_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"steps": 4000, "batch_size": 256, "lr": 1e-3},
    "unet": {"steps": 4000, "batch_size": 64, "lr": 1e-3},
    "mnist5k": {"steps": 2000, "batch_size": 32, "lr": 1e-3},  # 28x28: 12x the pixels of digits, same CPU budget
}


def teacher_config(data: DiffusionData, seed: int = 0, width: int = 0, **overrides: Any) -> dict[str, Any]:
    """The full training configuration of a teacher (its cache key): data, architecture and optimisation."""
    arch = "unet" if data.is_image else "mlp"
    stripped = not data.num_classes and DIFFUSION_DATA.entry(data.name).tags.get("classes")  # labels not used
    labels = {"unconditional": True} if stripped else {}
    cfg = {**labels, "data": data.name, "n_train": len(data.train), "arch": arch, "width": width, "seed": seed,
           "cond_drop": 0.1, "ema": 0.999, **TEACHER_DEFAULTS.get(data.name, TEACHER_DEFAULTS[arch])}
    return {**cfg, **{k: v for k, v in overrides.items() if v is not None}}


def cached_teacher(data: DiffusionData, config: dict[str, Any], device: str = "cpu",
                   progress: Progress | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The teacher ``config`` describes (``teacher_config``): trained once, then loaded from the cache."""

    def train() -> tuple[nn.Module, dict[str, Any]]:
        net = create_denoiser(data.sample_shape, data.num_classes, arch=config["arch"], width=config["width"])
        out = train_denoiser(net, data, NoiseSchedule(), steps=config["steps"], batch_size=config["batch_size"],
                             lr=config["lr"], cond_drop=config["cond_drop"], ema=config["ema"],
                             seed=config["seed"], device=device, progress=progress)
        return out.cpu(), {"params": sum(p.numel() for p in out.parameters())}

    net, meta = cached_model(cache_dir("diffusion", "teachers"), config, train, save_denoiser, load_denoiser)
    return net.to(device).eval().requires_grad_(False), meta
