"""The field's evaluation protocol: train fresh networks only on the synthetic set, test on real data.

ConvNet-3 (width 128, instance norm, average pooling), SGD lr 0.01, momentum 0.9, weight decay 5e-4,
lr x 0.1 at half the epochs, DSA augmentation while training; test accuracy as mean +- std over several
synthetic sets x networks. Cross-architecture: any zoo model; ``CROSS_ARCHITECTURES`` is the field's table
(ConvNet, MLP, ResNet-8, a tiny ViT).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.condense import augment
from kdlab.condense.synthetic import SyntheticSet
from kdlab.data.base import ArrayDataset
from kdlab.errors import ConfigError, ShapeError
from kdlab.models import MODELS, create

CONVNET_PARAMS: dict[str, Any] = {"width": 128, "depth": 3, "norm": "instancenorm", "pool": "avgpool"}
#: the field's cross-architecture table: the ConvNet a set was distilled with, and three it never saw
CROSS_ARCHITECTURES = ("convnet", "mlp", "resnet8", "vit_tiny")


def protocol_params(model: str, in_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """The evaluation protocol's parameters of ``model``: ConvNet-3 width 128 for ``convnet``; for ``vit_tiny`` a
    small ViT (dim 64, 4 blocks, 4 heads) with 2-pixel patches on images under 16 pixels, 4-pixel ones above."""
    if model == "convnet":
        return dict(CONVNET_PARAMS)
    if model == "vit_tiny":
        small = in_shape is not None and min(in_shape[1:]) < 16
        return {"patch": 2 if small else 4, "dim": 64, "depth": 4, "heads": 4}
    return {}


@dataclass
class EvalConfig:
    """How synthetic sets are evaluated (defaults: the field's protocol; ``epochs`` sized for CPU)."""

    models: tuple[str, ...] = ("convnet",)
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_nets: int = 3
    epochs: int = 300
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    dsa: bool = True
    dsa_strategy: str = augment.DEFAULT_STRATEGY
    seed: int = 0

    def __post_init__(self) -> None:
        self.models = tuple([self.models] if isinstance(self.models, str) else self.models)
        if not self.models:
            raise ConfigError("evaluation.models: give at least one model name, e.g. ['convnet', 'mlp']")
        for m in self.models:
            MODELS.entry(m, where="evaluation.models")
        for name, value in (("n_nets", self.n_nets), ("epochs", self.epochs), ("batch_size", self.batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"evaluation.{name}: expected a whole number >= 1, got {value!r}")
        if not self.lr > 0 or not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ConfigError(f"evaluation: need lr > 0, 0 <= momentum < 1, weight_decay >= 0; got lr={self.lr}, "
                              f"momentum={self.momentum}, weight_decay={self.weight_decay}")
        self.ops = augment.parse_strategy(self.dsa_strategy) if self.dsa else ()

    def params_for(self, model: str, in_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
        """The model's parameters: ``model_params[model]``, else ``protocol_params(model, in_shape)``."""
        if model in self.model_params:
            return dict(self.model_params[model])
        return protocol_params(model, in_shape)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross entropy against hard labels (N,) or label distributions (N, K)."""
    if target.ndim == 1:
        return F.cross_entropy(logits, target)
    return -(target * F.log_softmax(logits, 1)).sum(1).mean()


def train_network(net: nn.Module, x: torch.Tensor, target: torch.Tensor, config: EvalConfig,
                  generator: torch.Generator) -> nn.Module:
    """Train ``net`` on normalised images ``x`` and labels/distributions ``target`` by the protocol."""
    opt = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [config.epochs // 2], 0.1)
    net.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        for b in range(0, len(x), config.batch_size):
            idx = order[b:b + config.batch_size]
            xb = x[idx]
            if config.ops:
                xb = augment.apply(xb, augment.sample(len(xb), config.ops, generator))
            loss = soft_cross_entropy(net(xb), target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return net


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``net`` on normalised images ``x``."""
    net.eval()
    hits = sum(int((net(x[b:b + batch_size]).argmax(1) == y[b:b + batch_size]).sum())
               for b in range(0, len(x), batch_size))
    return hits / max(len(y), 1)


def _normalize(x: torch.Tensor, syn: SyntheticSet) -> torch.Tensor:
    return (x - torch.tensor(syn.mean).view(1, -1, 1, 1)) / torch.tensor(syn.std).view(1, -1, 1, 1)


def evaluate_sets(sets: SyntheticSet | Sequence[SyntheticSet] | Mapping[str, SyntheticSet], test: ArrayDataset,
                  config: EvalConfig | None = None, **overrides: Any) -> pd.DataFrame:
    """Test accuracy of ``n_nets`` fresh networks per model per synthetic set: one row per network
    (``set, model, net, acc``). Summarise with ``summarize``."""
    config = config or EvalConfig(**overrides)
    if overrides and config is not None and not isinstance(config, EvalConfig):
        raise ConfigError("evaluation: pass either an EvalConfig or keyword overrides")
    if isinstance(sets, SyntheticSet):
        sets = {"set0": sets}
    elif not isinstance(sets, Mapping):
        sets = {f"set{i}": s for i, s in enumerate(sets)}
    rows = []
    for s_i, (name, syn) in enumerate(sets.items()):
        if syn.in_shape != test.in_shape or syn.num_classes != test.num_classes:
            raise ShapeError(f"evaluation: synthetic set {name!r} is {syn.in_shape} with {syn.num_classes} classes "
                             f"but the test data is {test.in_shape} with {test.num_classes}")
        x, target = syn.normalized(), syn.targets()
        x_test = _normalize(test.x, syn)
        for model in config.models:
            for n in range(config.n_nets):
                seed = config.seed * 1_000_003 + s_i * 1009 + n
                g = torch.Generator().manual_seed(seed)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    net = create(model, syn.num_classes, syn.in_shape, **config.params_for(model, syn.in_shape))
                    train_network(net, x, target, config, g)
                rows.append({"set": name, "model": model, "net": n, "acc": accuracy(net, x_test, test.y)})
    return pd.DataFrame(rows, columns=["set", "model", "net", "acc"])


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and (population) std of accuracy per model over all sets x networks, and the count."""
    g = results.groupby("model", sort=False)["acc"]
    return pd.DataFrame({"mean": g.mean(), "std": g.apply(lambda a: float(np.std(a.to_numpy()))),
                         "n": g.size()})
