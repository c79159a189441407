"""Committees of trained networks: what the teacher-based condensation methods (CV-DD, INFER, NRR-DD) share.

They all follow SRe2L (Yin, Zhao & Shen, "Squeeze, Recover and Relabel: Dataset Condensation at ImageNet Scale
From A New Perspective", NeurIPS 2023): networks trained on the real data ("squeeze") guide pixel optimisation
with cross entropy plus BatchNorm-statistics matching ("recover") and give the soft labels ("relabel").

- ``build_members`` / ``train_committee``: zoo networks of different architectures (default ConvNet, MLP,
  ResNet-8) trained ``committee_epochs`` on the real normalised data with ``evaluate.train_network`` (with the
  config's DSA augmentation, which the recovery applies too), each scored on a held-out ``val_fraction`` of every
  class (the "prior performance" CV-DD votes with).
- ``BNMatching`` / ``member_loss``: for every BatchNorm layer, ``||mean_syn - running_mean||_2 +
  ||var_syn - running_var||_2`` of its input (biased variance over batch and positions), the first layer weighted
  ``first_bn_multiplier`` (10, SRe2L's); computed per group of images, so one forward serves several batches.
- ``vote_weights``: CV-DD's prior votes, ``softmax(100 * accuracy / temperature)`` (accuracy read as a percentage,
  as in the reference code).
- ``soft_labels``: ``sum_i w_i softmax(f_i(x) / T)``; with ``batch_specific`` each member's BatchNorm layers use
  the statistics of the synthetic batch itself (CV-DD's batch-specific soft labelling, BSSL).
- ``pixel_optimizer`` / ``cosine_lr``: the recover optimiser, Adam (betas 0.5, 0.9) with a cosine-decayed rate.

Departures (CPU): members are small kdlab zoo models trained for a few epochs here (the papers load ResNet-18/50,
MobileNetV2, ... trained for hundreds of epochs); a ConvNet member uses ``norm='batchnorm'`` (it needs running
statistics; the config's other ConvNet parameters are kept), and a member without BatchNorm (the MLP) adds cross
entropy only.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.condense.distill import Condensation
from kdlab.condense.evaluate import EvalConfig, accuracy, protocol_params, train_network
from kdlab.errors import ConfigError
from kdlab.models import MODELS
from kdlab.registry import Param

COMMITTEE = ("convnet", "mlp", "resnet8")
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def committee_params(default: Sequence[str] = COMMITTEE) -> dict[str, Param]:
    """The declared parameters of a committee: its zoo models, their training epochs and held-out share."""
    return {
        "committee": Param(list(default), "zoo models of the committee, trained on the real data", list),
        "committee_epochs": Param(20, "epochs each committee member trains on the real data", int, 1, 10_000),
        "val_fraction": Param(0.1, "share of each class held out to score the members", float, 0.0, 0.5,
                              low_open=True),
    }


def recover_params(lr: float) -> dict[str, Param]:
    """The declared parameters of SRe2L-style pixel recovery (defaults: the CIFAR settings of CV-DD and INFER)."""
    return {
        "lr": Param(lr, "Adam learning rate on the pixels (cosine-decayed over the iterations)", float, 0.0, 100.0,
                    low_open=True),
        "r_bn": Param(0.01, "weight of the BatchNorm-statistics loss", float, 0.0, 1000.0),
        "first_bn_multiplier": Param(10.0, "extra weight of the first BatchNorm layer's term", float, 0.0, 1000.0),
    }


def check_models(names: Sequence[Any], where: str) -> tuple[str, ...]:
    """``names`` as a tuple of known zoo model names (at least one), else a ConfigError naming ``where``."""
    if not names:
        raise ConfigError.at(where, f"give at least one zoo model name, e.g. {list(COMMITTEE)}")
    for name in names:
        if not isinstance(name, str):
            raise ConfigError.at(where, f"expected zoo model names, got {name!r}")
        MODELS.entry(name, where=where)
    return tuple(names)


@dataclass
class Committee:
    """Trained, frozen members (eval mode) with their held-out accuracies, in the order they were named."""

    names: tuple[str, ...]
    members: list[nn.Module]
    accuracy: list[float]

    def describe(self) -> dict[str, Any]:
        """JSON-able facts for a set's meta."""
        return {"committee": list(self.names), "committee_val_accuracy": list(self.accuracy)}


def member_params(job: Condensation, name: str) -> dict[str, Any]:
    """Parameters of committee member ``name``: the config's when it is the config's model, else the evaluation
    protocol's; a ConvNet gets BatchNorm (BN matching needs running statistics)."""
    params = dict(job.cfg.model_params) if name == job.cfg.model else protocol_params(name, job.train.in_shape)
    if name == "convnet":
        params["norm"] = "batchnorm"
    return params


def build_members(job: Condensation, names: Sequence[str]) -> list[nn.Module]:
    """Freshly initialised members (from the global RNG, which ``condense`` seeds)."""
    return [job.new_net(name, **member_params(job, name)) for name in names]


def holdout_split(job: Condensation, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions to train on and to score on: ``fraction`` of every class (at least one image, never all) held out,
    drawn from ``job.g``."""
    train, val = [], []
    for m in job.members:
        perm = m[torch.randperm(len(m), generator=job.g)]
        n_val = min(max(1, round(fraction * len(m))), len(m) - 1)
        val.append(perm[:n_val])
        train.append(perm[n_val:])
    return torch.cat(train), torch.cat(val)


def freeze(net: nn.Module) -> nn.Module:
    """``net`` in eval mode with no parameter requiring gradients."""
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def train_committee(job: Condensation, names: Sequence[str], members: Sequence[nn.Module], epochs: int,
                    val_fraction: float) -> Committee:
    """Train ``members`` on the real data less a held-out share (the protocol's SGD, with the DSA augmentation the
    recovery applies, so augmented images stay in the members' domain) and score each on that share."""
    tr, va = holdout_split(job, val_fraction)
    cfg = EvalConfig(models=tuple(names), epochs=epochs, lr=0.01, dsa=job.cfg.dsa, dsa_strategy=job.cfg.dsa_strategy,
                     batch_size=256)
    acc = []
    for net in members:
        train_network(net, job.real[tr], job.train.y[tr], cfg, job.g)
        acc.append(accuracy(net, job.real[va], job.train.y[va]))
    return Committee(tuple(names), [freeze(net) for net in members], acc)


def vote_weights(acc: Sequence[float], temperature: float) -> torch.Tensor:
    """CV-DD's prior votes: ``softmax(100 * accuracy / temperature)`` (float64; accuracies in [0, 1])."""
    return torch.softmax(torch.tensor(list(acc), dtype=torch.float64) * 100.0 / temperature, 0)


class BNMatching:
    """Forward hooks on every BatchNorm layer of ``net`` recording, per group of ``groups`` equal consecutive
    chunks of the batch, ``||mean - running_mean||_2 + ||var - running_var||_2`` of the layer's input (SRe2L)."""

    def __init__(self, net: nn.Module, groups: int = 1):
        self.layers = [m for m in net.modules() if isinstance(m, BATCHNORMS)]
        self.groups = groups
        self.terms: list[torch.Tensor] = []
        self._handles: list[Any] = []

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        x = inputs[0]
        x = x.reshape(self.groups, -1, *x.shape[1:]).transpose(1, 2).flatten(2)  # (groups, C, values)
        mean, var = x.mean(2), x.var(2, correction=0)
        self.terms.append((mean - module.running_mean).norm(dim=1) + (var - module.running_var).norm(dim=1))

    def __enter__(self) -> BNMatching:
        self.terms = []
        self._handles = [m.register_forward_hook(self._hook) for m in self.layers]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def loss(self, first_multiplier: float = 1.0) -> torch.Tensor:
        """The summed terms of the last forward per group (groups,), the first layer's times ``first_multiplier``;
        zeros for a network without BatchNorm."""
        if not self.terms:
            return torch.zeros(self.groups)
        return sum(t * (first_multiplier if i == 0 else 1.0) for i, t in enumerate(self.terms))


def member_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor, groups: int,
                first_multiplier: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross entropy and BN-matching loss of ``net`` on ``groups`` equal consecutive batches of ``x``, one value
    per group each: (groups,), (groups,)."""
    with BNMatching(net, groups) as bn:
        ce = F.cross_entropy(net(x), y, reduction="none").view(groups, -1).mean(1)
    return ce, bn.loss(first_multiplier)


def with_batch_statistics(net: nn.Module) -> nn.Module:
    """A copy of ``net`` whose BatchNorm layers normalise with the statistics of the batch they see (the copy's
    running statistics absorb the update; ``net`` is untouched)."""
    out = copy.deepcopy(net).eval()
    for m in out.modules():
        if isinstance(m, BATCHNORMS):
            m.train()
    return out


@torch.no_grad()
def soft_labels(members: Sequence[nn.Module], weights: Sequence[float] | torch.Tensor, x: torch.Tensor,
                temperature: float = 1.0, batch_specific: bool = False) -> torch.Tensor:
    """``sum_i w_i softmax(f_i(x) / temperature)`` with the weights normalised to sum 1: (N, K) float32 rows that
    sum to 1. ``batch_specific``: ``x`` is one batch whose own statistics every BatchNorm layer uses (BSSL)."""
    w = torch.as_tensor(weights, dtype=torch.float64)
    w = w / w.sum()
    total = torch.zeros(())
    for net, wi in zip(members, w, strict=True):
        net = with_batch_statistics(net) if batch_specific else net.eval()
        total = total + wi * F.softmax(net(x).double() / temperature, 1)
    return total.float()


def pixel_optimizer(param: torch.Tensor, lr: float) -> torch.optim.Adam:
    """The recover optimiser of SRe2L / CV-DD / INFER: Adam with betas (0.5, 0.9)."""
    return torch.optim.Adam([param], lr=lr, betas=(0.5, 0.9), eps=1e-8)


def cosine_lr(opt: torch.optim.Optimizer, base: float, it: int, total: int) -> None:
    """Set the cosine-decayed rate of 1-based iteration ``it`` of ``total``: ``base * (1 + cos(pi (it-1)/total))/2``."""
    lr = 0.5 * (1 + math.cos(math.pi * (it - 1) / max(total, 1))) * base
    for group in opt.param_groups:
        group["lr"] = lr


def pixel_bounds(job: Condensation) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel smallest and largest normalised value of the real data (the pixel range images are kept in)."""
    return job.real.amin((0, 2, 3), keepdim=True), job.real.amax((0, 2, 3), keepdim=True)


def class_batches(x: torch.Tensor, k: int) -> torch.Tensor:
    """Class-major images (k * n, ...) regrouped into n batches of one image per class, batch-major (n * k, ...):
    the SRe2L batch that BN matching sees."""
    return x.reshape(k, -1, *x.shape[1:]).transpose(0, 1).flatten(0, 1)
