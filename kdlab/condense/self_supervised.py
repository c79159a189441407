"""KRR-ST: self-supervised dataset distillation for transfer learning (Lee, Lee, Ko, Kawaguchi, Lee & Hwang,
ICLR 2024).

Key change: distil for pre-training, without labels. A self-supervised target model ``t`` (Barlow Twins) gives
representations; the set is images ``X_s`` with learnable target representations ``Y_s`` (initialised as
``t(X_s)``). The inner problem has no randomness: kernel ridge regression of ``Y_s`` on the features ``g(X_s)``
of a model ``g`` from a pool, in closed form; the outer loss is its error on a real batch,
``mean ||g(X_r) W - t(X_r)||^2`` with ``W = g(X_s)^T (K_ss + lam I)^-1 Y_s`` (a bias column appended to the
features, ``lam = ridge * trace(K_ss)``), minimised over ``X_s`` and ``Y_s`` with Adam. Pool models are trained
one step on ``(X_s, Y_s)`` (MSE) after each use and re-initialised after ``online_iterations`` steps.
Pre-training on the set regresses ``Y_s`` (``kdlab.condense.transfer_eval``).

Defaults of the paper / official code (db-Lee/selfsup_dd): Adam lr 1e-3 (its CIFAR-100 command: 1e-4) decayed
linearly to 1e-3 of it, ridge 1e-6, pool models trained by SGD (lr 0.1, momentum 0.9, weight decay 1e-3); the KRR
is solved in float64 here. kdlab's departures, for CPU:
- the target is a small batch-norm ConvNet (width ``target_width``, global average pooled: ``Y_s`` has
  ``target_width`` columns) trained ``ssl_epochs`` by Barlow Twins (lambda 5e-3, a 2-layer projector of 256,
  Adam) with two DSA operations per view, on the spot and not cached (the paper: a ResNet-18 trained offline,
  512-d); its representations are standardised per dimension over the real data, so Adam's step on ``Y_s``
  has a known scale (the paper uses them raw);
- ``models`` 4 pool models and ``online_iterations`` 100 (the paper: 10 and 1,000, over 160,000 iterations);
- the real batch is ``K * b`` random images (``b = batch_real`` capped by the smallest class; no labels used),
  augmented by DSA when ``dsa`` is on (the official code: 1,024 augmented images);
- the initial images are ``ipc`` real ones per class (those ``random`` picks with the same seed), so the set keeps
  class labels ``y`` for the standard evaluation (the paper draws them without labels);
- the learning rate is ``lr_img`` when set, else 1e-3; resuming from a snapshot re-initialises ``Y_s`` as the
  target's representations of the snapshot's images (snapshots hold images only).
``meta["stored_images"]`` counts ``Y_s`` too, as ``target_width / (C * H * W)`` image per image (x1.5 on 8x8
digits at the default width 32, x1.04 on 28x28 MNIST).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.condense import augment
from kdlab.condense.distill import Condensation
from kdlab.condense.matching import embed
from kdlab.condense.methods import Condensed, register_condenser
from kdlab.models import create
from kdlab.registry import Param

FINAL_LR_FACTOR = 1e-3  # linear decay of the outer lr to this fraction, as in the official code
ONLINE_LR, ONLINE_MOMENTUM, ONLINE_WD = 0.1, 0.9, 1e-3
BARLOW_LAMBDA, PROJECTOR, SSL_LR, SSL_BATCH = 5e-3, 256, 1e-3, 256


def krr_predict(f_syn: torch.Tensor, y_syn: torch.Tensor, f_real: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """Kernel ridge regression of ``y_syn`` on features ``f_syn`` (a bias column appended), evaluated at
    ``f_real``: ``K_rs (K_ss + lam I)^-1 Y_s`` with the linear kernel and ``lam = ridge * trace(K_ss)``."""
    f_syn = torch.cat([f_syn, f_syn.new_ones(len(f_syn), 1)], 1)
    f_real = torch.cat([f_real, f_real.new_ones(len(f_real), 1)], 1)
    k_ss = f_syn @ f_syn.T
    lam = ridge * torch.trace(k_ss.detach())
    eye = torch.eye(len(k_ss), dtype=k_ss.dtype, device=k_ss.device)
    return (f_real @ f_syn.T) @ torch.linalg.solve(k_ss + lam * eye, y_syn)


def krr_loss(f_syn: torch.Tensor, y_syn: torch.Tensor, f_real: torch.Tensor, y_real: torch.Tensor,
             ridge: float = 1e-6) -> torch.Tensor:
    """KRR-ST's outer loss: mean squared error of the KRR prediction against the real targets."""
    return F.mse_loss(krr_predict(f_syn, y_syn, f_real, ridge), y_real)


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lam: float = BARLOW_LAMBDA) -> torch.Tensor:
    """Barlow Twins (Zbontar et al., ICML 2021): the cross-correlation of the embeddings of two views (each column
    standardised over the batch) is pushed to the identity, ``sum_i (1 - c_ii)^2 + lam * sum_{i != j} c_ij^2``."""
    z1 = (z1 - z1.mean(0)) / z1.std(0, correction=0).clamp_min(1e-6)
    z2 = (z2 - z2.mean(0)) / z2.std(0, correction=0).clamp_min(1e-6)
    c = z1.T @ z2 / len(z1)
    on = (1 - c.diagonal()).pow(2).sum()
    return on + lam * (c.pow(2).sum() - c.diagonal().pow(2).sum())


class TargetModel(nn.Module):
    """The self-supervised target: a batch-norm ConvNet whose globally average-pooled last map, standardised per
    dimension over the real data (``standardize``), is the representation."""

    def __init__(self, in_shape: tuple[int, int, int], width: int):
        super().__init__()
        self.net = create("convnet", 1, in_shape, width=width, depth=3, norm="batchnorm", pool="avgpool")
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.net.features(x).mean((2, 3)) - self.mean) / self.std

    @torch.no_grad()
    def standardize(self, real: torch.Tensor, batch_size: int = 500) -> TargetModel:
        """Set ``mean``/``std`` so the representations of ``real`` have mean 0 and std 1 per dimension (eval mode)."""
        self.eval()
        self.mean.zero_()
        self.std.fill_(1.0)
        f = torch.cat([self(real[b:b + batch_size]) for b in range(0, len(real), batch_size)])
        self.mean.copy_(f.mean(0))
        self.std.copy_(f.std(0).clamp_min(1e-6))
        return self

def train_target(real: torch.Tensor, width: int, epochs: int, ops: tuple[str, ...],
                 generator: torch.Generator) -> TargetModel:
    """A ``TargetModel`` trained by Barlow Twins on normalised images ``real``: two views per image, each a
    per-image draw of two DSA operations, through a projector (Linear-BatchNorm-ReLU-Linear)."""
    target = TargetModel(tuple(real.shape[1:]), width)
    projector = nn.Sequential(nn.Linear(width, PROJECTOR), nn.BatchNorm1d(PROJECTOR), nn.ReLU(),
                              nn.Linear(PROJECTOR, PROJECTOR))
    opt = torch.optim.Adam([*target.parameters(), *projector.parameters()], lr=SSL_LR)

    def view(x: torch.Tensor) -> torch.Tensor:
        for _ in range(2):
            x = augment.apply(x, augment.sample(len(x), ops, generator, torch.arange(len(x))))
        return x

    for _ in range(epochs):
        order = torch.randperm(len(real), generator=generator)
        for b in range(0, len(real), SSL_BATCH):
            x = real[order[b:b + SSL_BATCH]]
            if len(x) < 2:  # batch statistics need two images
                break
            loss = barlow_twins_loss(projector(target(view(x))), projector(target(view(x))))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return target.standardize(real).requires_grad_(False)


class ModelPool:
    """Models trained online on the synthetic set by MSE regression of its representations, one step per use,
    re-initialised after ``online_iterations`` steps (the paper's pool); each starts at a random step count."""

    def __init__(self, make: Callable[[], nn.Module], size: int, online_iterations: int, generator: torch.Generator):
        self.make, self.online = make, online_iterations
        self.models = [self.make() for _ in range(size)]
        self.opts = [self._opt(m) for m in self.models]
        self.steps = [0] * size
        self.g = generator

    @staticmethod
    def _opt(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=ONLINE_LR, momentum=ONLINE_MOMENTUM, weight_decay=ONLINE_WD)

    def warm_up(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Train every model a random number of steps in [1, online_iterations), as the official code does."""
        for i in range(len(self.models)):
            for _ in range(int(torch.randint(1, max(self.online, 2), (1,), generator=self.g))):
                self.step(i, x, y)

    def step(self, i: int, x: torch.Tensor, y: torch.Tensor) -> None:
        """One SGD step of model ``i`` on ``(x, y)``, or a fresh model when it has had its steps."""
        if self.steps[i] >= self.online:
            self.models[i], self.steps[i] = self.make(), 0
            self.opts[i] = self._opt(self.models[i])
            return
        model, opt = self.models[i].train(), self.opts[i]
        loss = F.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self.steps[i] += 1


@register_condenser("krr_st", params={
    "models": Param(4, "pool size: models trained online on the set (the paper: 10)", int, 1, 100),
    "online_iterations": Param(100, "steps a pool model trains before it is re-initialised (the paper: 1000)",
                               int, 1, 100_000),
    "ridge": Param(1e-6, "KRR ridge, as a fraction of trace(K_ss) (the paper's 1e-6)", float, 0.0, 1.0),
    "ssl_epochs": Param(5, "Barlow Twins epochs of the self-supervised target on the real data", int, 1, 1000),
    "target_width": Param(32, "channels of the target ConvNet = dimension of the representations", int, 2, 1024),
}, learned=True, family="self-supervised (KRR)")
def krr_st(job: Condensation, params: dict[str, Any]) -> Condensed:
    """KRR-ST (Lee et al., ICLR 2024): images and target representations fitted by kernel ridge regression."""
    cfg = job.cfg
    ops = augment.parse_strategy(cfg.dsa_strategy) or augment.parse_strategy(augment.DEFAULT_STRATEGY)
    start, first = job.start_images()  # first: the same images as ``random`` with this seed
    target = train_target(job.real, params["target_width"], params["ssl_epochs"], ops, job.g)
    syn = start.clone().requires_grad_(True)
    with torch.no_grad():
        reps = target(start).requires_grad_(True)
    dim = reps.shape[1]
    pool = ModelPool(lambda: create(cfg.model, dim, job.train.in_shape, **cfg.model_params), params["models"],
                     params["online_iterations"], job.g)
    if first <= cfg.iterations:
        pool.warm_up(syn.detach(), reps.detach())
    lr = cfg.step_lr  # lr_img, else 1e-3 (the official default, DEFAULT_LR_IMG)
    opt = torch.optim.Adam([syn, reps], lr=lr)
    n_real = job.k * job.b

    def step(it: int) -> float:
        for group in opt.param_groups:  # linear decay over the whole run (also when resumed)
            group["lr"] = lr * (1 - (1 - FINAL_LR_FACTOR) * (it - 1) / max(cfg.iterations, 1))
        i = int(torch.randint(len(pool.models), (1,), generator=job.g))
        model = pool.models[i].eval()
        with torch.no_grad():
            xr = job.augment(job.real[torch.randperm(len(job.real), generator=job.g)[:n_real]])
            yr, fr = target(xr), embed(model, xr)
        loss = krr_loss(embed(model, syn).double(), reps.double(), fr.double(), yr.double(), params["ridge"])
        syn.grad, reps.grad = torch.autograd.grad(loss, [syn, reps])
        opt.step()
        pool.step(i, syn.detach(), reps.detach())
        return float(loss.detach())

    x = job.learn(syn, first, step)
    per_image = dim / math.prod(job.train.in_shape)
    meta = {"representation_dim": dim, "stored_images": len(x) * (1 + per_image),
            "target": f"barlow twins convnet-3 width {params['target_width']}, {params['ssl_epochs']} epochs"}
    return Condensed(x, job.y_syn.clone(), meta=meta,
                     extras={"representations": reps.detach().float().numpy()})
