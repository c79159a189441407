"""Expert trajectories for trajectory matching: networks trained on the real data, their parameters at every epoch.

- ``plain`` (MTT, Cazenavette et al., CVPR 2022, ``buffer.py``): SGD at ``lr`` with momentum 0 and no weight decay,
  DSA augmentation of every real batch of 256, no learning-rate decay; parameters stored at epochs 0..E.
- ``flat`` (FTD, Du et al., CVPR 2023): the experts are trained with sharpness-aware minimisation so that the
  trajectory runs through flat regions; as in FTD's ``buffer_FTD.py``, GSAM (Zhuang et al., ICLR 2022) on top of
  plain SGD, adaptive (ASAM-scaled) perturbation, ``rho`` 0.01 (rho_max = rho_min, FTD's run_buffer.sh) and
  ``alpha`` 0.4 (the surrogate-gap term); both gradients come from the same augmented batch.
- ``smooth`` (AST, Shen et al., 2023, "Enhancing Dataset Distillation via Alignment with Smooth and High-Quality
  Expert Trajectories"): a clipping loss and a gradient penalty regulate how fast the expert's parameters move.
  kdlab's reading (the paper's code was not available): the batch loss is scaled so it never exceeds ``clip``
  (``L * min(1, clip / L)``, the factor held constant, so large early losses give no larger steps than ``clip``) and
  ``penalty * ||grad L||^2`` is added (double back-propagation); ``clip`` 1.0 and ``penalty`` 0.01 are kdlab's
  defaults, not the paper's. AST also trains its experts with momentum; kdlab keeps momentum 0 for every variant.

Departures for CPU: ``n_experts`` and ``epochs`` are small (MTT: 100 experts x 50 epochs). Experts are cached on disk
by content (``cache_dir("condense", "experts")/<key>.pt``): the key hashes the training images and labels, the
model and its parameters, the training settings, the variant and the seed; a second call with the same inputs loads
the file (``weights_only=True``) instead of training. Training draws from its own generator (seeded by ``seed`` and
the expert's index), never from the caller's, so a cache hit and a miss leave the caller's random stream alike.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.condense import augment
from kdlab.errors import ConfigError
from kdlab.models import create
from kdlab.paths import cache_dir, config_key, digest_tensor, file_lock

VARIANTS = ("plain", "flat", "smooth")
GSAM_EPS = 1e-12  # the reference GSAM's perturb_eps


@dataclass(frozen=True)
class ExpertConfig:
    """How the experts are trained (``rho``/``alpha`` used by ``flat``, ``clip``/``penalty`` by ``smooth``)."""

    n_experts: int = 2
    epochs: int = 8
    lr: float = 0.01
    batch_size: int = 256
    variant: str = "plain"
    rho: float = 0.01
    alpha: float = 0.4
    clip: float = 1.0
    penalty: float = 0.01

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"experts.variant: {self.variant!r} is not one of {list(VARIANTS)}")
        for name in ("n_experts", "epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"experts.{name}: expected a whole number >= 1, got {v!r}")
        if not self.lr > 0 or self.rho < 0 or self.alpha < 0 or not self.clip > 0 or self.penalty < 0:
            raise ConfigError(f"experts: need lr > 0, rho >= 0, alpha >= 0, clip > 0, penalty >= 0; got {self}")


@dataclass
class Experts:
    """Trajectories ``params`` (n_experts, epochs + 1, P) float32 (flattened parameters at the start and after every
    epoch), the mean training loss per epoch ``loss`` (n_experts, epochs), the cache ``key`` and ``path``, and
    whether this call ``trained`` them (False: loaded from the cache)."""

    params: torch.Tensor
    loss: torch.Tensor
    key: str
    path: Path
    trained: bool


def _digest(tensors: Sequence[torch.Tensor]) -> str:
    h = hashlib.blake2b(digest_size=20)
    for t in tensors:
        digest_tensor(h, t)
    return h.hexdigest()


def expert_key(x: torch.Tensor, y: torch.Tensor, model: str, model_params: dict[str, Any], config: ExpertConfig,
               ops: Sequence[str], seed: int) -> str:
    """The cache key: a hash of the images and labels, the model, the training settings, the DSA ops and the seed."""
    return config_key({"data": _digest([x, y]), "model": model, "model_params": dict(model_params),
                       "config": asdict(config), "ops": list(ops), "seed": int(seed)})


Grads = tuple[float, list[torch.Tensor]]  # (batch loss, update direction per parameter)


def _plain_grads(net: nn.Module, params: list[nn.Parameter], xb: torch.Tensor, yb: torch.Tensor) -> Grads:
    loss = F.cross_entropy(net(xb), yb)
    return float(loss.detach()), list(torch.autograd.grad(loss, params))


def _gsam_grads(net: nn.Module, params: list[nn.Parameter], xb: torch.Tensor, yb: torch.Tensor,
                config: ExpertConfig) -> Grads:
    """GSAM (adaptive): gradient ``g`` at w; ascend to ``w + e``, ``e = rho * w^2 g / ||w g||``; gradient ``g_p``
    there; the update direction is ``g_p - alpha * (g - its projection on g_p)``."""
    loss = F.cross_entropy(net(xb), yb)
    g = torch.autograd.grad(loss, params)
    with torch.no_grad():
        scale = config.rho / (torch.linalg.vector_norm(torch.stack([(p.abs() * gi).norm() for p, gi in
                                                                    zip(params, g, strict=True)])) + GSAM_EPS)
        e = [gi * scale * p.pow(2) for p, gi in zip(params, g, strict=True)]
        for p, ei in zip(params, e, strict=True):
            p.add_(ei)
    g_p = torch.autograd.grad(F.cross_entropy(net(xb), yb), params)
    with torch.no_grad():
        for p, ei in zip(params, e, strict=True):
            p.sub_(ei)
        inner = sum((a * b).sum() for a, b in zip(g, g_p, strict=True))
        n_g = torch.linalg.vector_norm(torch.stack([a.norm() for a in g]))
        n_p = torch.linalg.vector_norm(torch.stack([b.norm() for b in g_p]))
        cos = inner / (n_g * n_p + GSAM_EPS)
        direction = [b - config.alpha * (a - cos * n_g * b / (n_p + GSAM_EPS)) for a, b in zip(g, g_p, strict=True)]
    return float(loss.detach()), direction


def _smooth_grads(net: nn.Module, params: list[nn.Parameter], xb: torch.Tensor, yb: torch.Tensor,
                  config: ExpertConfig) -> Grads:
    """AST (kdlab's reading): the loss scaled down to at most ``clip``, plus ``penalty * ||grad||^2``."""
    loss = F.cross_entropy(net(xb), yb)
    clipped = loss * (config.clip / loss.detach()).clamp(max=1.0)
    grads = torch.autograd.grad(clipped, params, create_graph=config.penalty > 0)
    if config.penalty > 0:
        total = clipped + config.penalty * sum((gi ** 2).sum() for gi in grads)
        grads = torch.autograd.grad(total, params)
    return float(loss.detach()), [gi.detach() for gi in grads]


def train_expert(net: nn.Module, x: torch.Tensor, y: torch.Tensor, config: ExpertConfig, ops: Sequence[str],
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Train ``net`` on normalised images ``x`` for ``config.epochs``; its flattened parameters at epochs 0..E
    (E + 1, P) and the mean training loss per epoch (E,)."""
    params = [p for p in net.parameters() if p.requires_grad]
    snaps = [nn.utils.parameters_to_vector(params).detach().clone()]
    losses = []
    net.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for b in range(0, len(x), config.batch_size):
            idx = order[b:b + config.batch_size]
            xb = x[idx]
            if ops:
                xb = augment.apply(xb, augment.sample(len(xb), tuple(ops), generator))
            if config.variant == "flat":
                loss, direction = _gsam_grads(net, params, xb, y[idx], config)
            elif config.variant == "smooth":
                loss, direction = _smooth_grads(net, params, xb, y[idx], config)
            else:
                loss, direction = _plain_grads(net, params, xb, y[idx])
            with torch.no_grad():  # SGD, momentum 0, no weight decay
                for p, d in zip(params, direction, strict=True):
                    p.sub_(d, alpha=config.lr)
            total += loss * len(idx)
        losses.append(total / len(x))
        snaps.append(nn.utils.parameters_to_vector(params).detach().clone())
    return torch.stack(snaps), torch.tensor(losses, dtype=torch.float32)


def expert_trajectories(x: torch.Tensor, y: torch.Tensor, model: str, model_params: dict[str, Any],
                        num_classes: int, config: ExpertConfig, ops: Sequence[str] = (), seed: int = 0,
                        folder: str | os.PathLike[str] | None = None) -> Experts:
    """The trajectories of ``config.n_experts`` networks ``model(**model_params)`` trained on ``(x, y)``: loaded from
    the cache (``folder``, default ``cache_dir("condense", "experts")``) or trained once under a file lock and
    written there atomically. Expert ``i`` starts from ``torch.manual_seed(seed * 1_000_003 + i)``."""
    key = expert_key(x, y, model, model_params, config, ops, seed)
    root = Path(folder) if folder is not None else cache_dir("condense", "experts")
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{key}.pt"
    with file_lock(root / f"{key}.lock"):
        if path.is_file():
            try:
                d = torch.load(path, map_location="cpu", weights_only=True)
                params, loss = d["params"], d["loss"]
                if params.shape[:2] == (config.n_experts, config.epochs + 1):
                    return Experts(params, loss, key, path, trained=False)
            except Exception:  # a damaged entry is rebuilt
                pass
            path.unlink(missing_ok=True)
        trajectories, losses = [], []
        for i in range(config.n_experts):
            s = int(seed) * 1_000_003 + i
            g = torch.Generator().manual_seed(s)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                net = create(model, num_classes, tuple(x.shape[1:]), **model_params)
                snaps, loss = train_expert(net, x, y, config, ops, g)
            trajectories.append(snaps)
            losses.append(loss)
        params, loss = torch.stack(trajectories).float(), torch.stack(losses)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"params": params, "loss": loss}, tmp)
        os.replace(tmp, path)
    return Experts(params, loss, key, path, trained=True)
