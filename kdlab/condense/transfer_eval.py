"""Transfer evaluation of distilled sets, the protocol of KRR-ST (Lee, Lee, Ko, Kawaguchi, Lee & Hwang, ICLR 2024):
pre-train a fresh network on a set, then on each target task measure (1) a linear probe on its frozen features and
(2) fine-tuning of all its weights with a new head; test accuracy per (set, target, protocol).

Pre-training: a set with ``extras["representations"]`` (KRR-ST) regresses them (MSE; SGD lr 0.1, momentum 0.9,
weight decay 1e-3, no augmentation, as the official code); any labelled set trains by cross entropy on its
labels (soft ones when present) with kdlab's evaluation protocol (``evaluate.train_network``), so every method
compares. Two reference rows keep a table honest: ``no pre-training`` (random initialisation) and ``full real
data`` (cross entropy on the whole training set). The probe is multinomial logistic regression fitted by L-BFGS
on float64 standardised features (``kdlab.transfer.teachers.fit_head``); fine-tuning trains the network and a new
linear head on the embedding by ``train_network`` (SGD, DSA) for ``finetune_epochs``.
Departures from the paper, for CPU: a few hundred pre-training epochs (the paper: 1,000), fine-tuning for tens of
epochs (the paper: 5,000 steps, cosine) and a closed-form probe instead of 5,000 SGD steps.

``transfer_targets(source)`` builds targets from built-in data only: the other digits dataset resized to the
source's size, and shifted copies (``kdlab.data.shifts``) of the source's own images, each with a small labelled
train split (``labels_per_class``) and a test split.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.condense.distill import channel_stats
from kdlab.condense.evaluate import CONVNET_PARAMS, EvalConfig, accuracy, train_network
from kdlab.condense.matching import embed
from kdlab.condense.synthetic import SyntheticSet
from kdlab.data.api import load
from kdlab.data.base import ArrayDataset
from kdlab.data.builtin import resize_images
from kdlab.data.shifts import apply_shifts
from kdlab.data.splits import stratified_subset
from kdlab.errors import ConfigError, ShapeError
from kdlab.models import MODELS, create
from kdlab.transfer.teachers import fit_head

#: for each source, the other built-in digits dataset and the side it is resized to
CROSS_DATASET = {"mnist5k": "digits", "digits": "mnist5k"}
DEFAULT_SHIFTS = (("rotate", 0.5), ("noise", 0.3))
NO_PRETRAINING, FULL_DATA = "no pre-training", "full real data"
REGRESSION_LR, REGRESSION_MOMENTUM, REGRESSION_WD = 0.1, 0.9, 1e-3  # the official pre-training of KRR-ST

Targets = dict[str, tuple[ArrayDataset, ArrayDataset]]


def transfer_targets(source_name: str, labels_per_class: int = 50,
                     shifts: Sequence[tuple[str, float]] = DEFAULT_SHIFTS, seed: int = 0) -> Targets:
    """Target tasks ``name -> (labelled train, test)`` for a set distilled from ``source_name`` (mnist5k or digits):
    the other dataset resized to the source's side (bilinear), and ``shifts`` of the source's train/test splits;
    each train split keeps ``labels_per_class`` images per class (stratified, chosen by ``seed``)."""
    if source_name not in CROSS_DATASET:
        raise ConfigError(f"source_name: {source_name!r} has no built-in transfer targets; valid: "
                          f"{list(CROSS_DATASET)}")
    if isinstance(labels_per_class, bool) or not isinstance(labels_per_class, int) or labels_per_class < 1:
        raise ConfigError(f"labels_per_class: expected a whole number >= 1, got {labels_per_class!r}")
    src = {s: load(source_name, split=s) for s in ("train", "test")}
    other = CROSS_DATASET[source_name]
    side = src["train"].in_shape[-1]

    def resized(d: ArrayDataset) -> ArrayDataset:
        return ArrayDataset(resize_images(d.x.clone(), side), d.y, f"{other}{side}", list(d.classes), d.source)

    def labelled(d: ArrayDataset) -> ArrayDataset:
        n = labels_per_class * d.num_classes
        if n > len(d):
            raise ConfigError(f"labels_per_class: {labels_per_class} x {d.num_classes} classes is more than the "
                              f"{len(d)} training images of {d.name!r}")
        return d.subset(stratified_subset(d.y.numpy(), n, seed))

    out = {f"{other} {side}x{side}": (labelled(resized(load(other, split="train"))),
                                      resized(load(other, split="test")))}
    for name, severity in shifts:
        step = (name, severity)
        out[f"{source_name} {name} {severity:g}"] = (
            apply_shifts(labelled(src["train"]), step, seed=seed, split="train"),
            apply_shifts(src["test"], step, seed=seed, split="test"))
    return out


@dataclass
class TransferConfig:
    """How sets are pre-trained on and transferred (epochs sized for CPU)."""

    model: str = "convnet"
    model_params: dict[str, Any] = field(default_factory=lambda: dict(CONVNET_PARAMS))
    pretrain_epochs: int = 300
    full_epochs: int = 30
    finetune_epochs: int = 30
    lr: float = 0.01  # cross-entropy pre-training and fine-tuning (train_network's SGD)
    probe_l2: float = 1e-3
    batch_size: int = 64
    dsa: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        MODELS.entry(self.model, where="transfer.model")
        self.model_params = MODELS.validate(self.model, dict(self.model_params), where="transfer.model_params")
        for name in ("pretrain_epochs", "full_epochs", "finetune_epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"transfer.{name}: expected a whole number >= 1, got {v!r}")
        if not self.lr > 0 or self.probe_l2 < 0:
            raise ConfigError(f"transfer: need lr > 0 and probe_l2 >= 0, got {self.lr!r} and {self.probe_l2!r}")

    def training(self, epochs: int) -> EvalConfig:
        return EvalConfig(models=(self.model,), epochs=epochs, lr=self.lr, batch_size=self.batch_size,
                          dsa=self.dsa, seed=self.seed)


@dataclass
class Backbone:
    """A pre-trained network and the per-channel statistics its inputs are standardised with."""

    net: nn.Module
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - torch.tensor(self.mean).view(1, -1, 1, 1)) / torch.tensor(self.std).view(1, -1, 1, 1)

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """The frozen embedding of pixel-space images ``x``, float64."""
        self.net.eval()
        x = self.normalize(x)
        return torch.cat([embed(self.net, x[b:b + batch_size]).double() for b in range(0, len(x), batch_size)])


class WithHead(nn.Module):
    """A backbone's embedding followed by a new linear head (fine-tuning)."""

    def __init__(self, backbone: nn.Module, dim: int, num_classes: int):
        super().__init__()
        self.backbone, self.head = backbone, nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(embed(self.backbone, x))


def regress(net: nn.Module, x: torch.Tensor, target: torch.Tensor, epochs: int, batch_size: int,
            generator: torch.Generator) -> nn.Module:
    """Train ``net`` to output ``target`` (N, D) on ``x`` by MSE (KRR-ST's pre-training on its set)."""
    opt = torch.optim.SGD(net.parameters(), lr=REGRESSION_LR, momentum=REGRESSION_MOMENTUM,
                          weight_decay=REGRESSION_WD)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for b in range(0, len(x), batch_size):
            idx = order[b:b + batch_size]
            loss = F.mse_loss(net(x[idx]), target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net


def pretrain(data: SyntheticSet | ArrayDataset | None, in_shape: tuple[int, ...], num_classes: int,
             config: TransferConfig, stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> Backbone:
    """A fresh network pre-trained on ``data``: regression of ``extras["representations"]`` if the set has them,
    else cross entropy on its labels; ``None`` leaves it at its random initialisation (inputs standardised with
    ``stats``, default mean 0 and std 1)."""
    seed = config.seed * 1_000_003
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if data is None:
            mean, std = stats or ((0.0,) * in_shape[0], (1.0,) * in_shape[0])
            return Backbone(create(config.model, num_classes, in_shape, **config.model_params), mean, std)
        reps = getattr(data, "extras", {}).get("representations")
        if isinstance(data, SyntheticSet):
            x, mean, std, epochs = data.normalized(), data.mean, data.std, config.pretrain_epochs
        else:
            (mean, std), epochs = channel_stats(data.x), config.full_epochs
            x = (data.x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
        if reps is not None:
            reps = torch.as_tensor(reps, dtype=torch.float32)
            net = create(config.model, reps.shape[1], in_shape, **config.model_params)
            regress(net, x, reps, epochs, config.batch_size, g)
        else:
            net = create(config.model, num_classes, in_shape, **config.model_params)
            train_network(net, x, data.targets() if isinstance(data, SyntheticSet) else data.y,
                          config.training(epochs), g)
    return Backbone(net.eval(), tuple(mean), tuple(std))


def probe_accuracy(f_train: torch.Tensor, y_train: torch.Tensor, f_test: torch.Tensor, y_test: torch.Tensor,
                   num_classes: int, l2: float = 1e-3) -> float:
    """Test accuracy of a multinomial logistic-regression probe fitted on float64 features (L-BFGS)."""
    w, b = fit_head(f_train.double().numpy(), y_train, num_classes, l2=l2)
    pred = (f_test.double() @ w.T + b).argmax(1)
    return float((pred == y_test).double().mean())


def finetune_accuracy(backbone: Backbone, train: ArrayDataset, test: ArrayDataset, config: TransferConfig,
                      salt: int = 0) -> float:
    """Test accuracy after fine-tuning a copy of the backbone with a new head on ``train``."""
    seed = config.seed * 1_000_003 + salt
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dim = backbone.features(train.x[:2]).shape[1]
        model = WithHead(copy.deepcopy(backbone.net), dim, train.num_classes)
        train_network(model, backbone.normalize(train.x), train.y, config.training(config.finetune_epochs),
                      torch.Generator().manual_seed(seed))
    return accuracy(model, backbone.normalize(test.x), test.y)


def evaluate_transfer(sets: Mapping[str, SyntheticSet], targets: Targets, full: ArrayDataset | None = None,
                      config: TransferConfig | None = None, scratch: bool = True, **overrides: Any) -> pd.DataFrame:
    """Pre-train on every set (and on nothing: ``scratch``; on ``full`` real data when given), then linear probe
    and fine-tune on every target: one row per (set, target, protocol) with the test accuracy.

    Paired by design: every pre-training starts from the same initial weights and batch order, and every
    fine-tuning on a target from the same head and batch order. Without pre-training, inputs are standardised
    with the statistics of ``full`` (else of the first set)."""
    if config is not None and overrides:
        raise ConfigError("transfer: pass either a TransferConfig or keyword overrides, not both")
    config = config or TransferConfig(**overrides)
    if not targets:
        raise ConfigError("targets: give at least one target, e.g. transfer_targets('digits')")
    shapes = {d.in_shape for tr, te in targets.values() for d in (tr, te)}
    shapes |= {s.in_shape for s in sets.values()} | ({full.in_shape} if full is not None else set())
    if len(shapes) != 1:
        raise ShapeError(f"transfer: the sets, full data and targets must share one input shape, got {sorted(shapes)}")
    in_shape = shapes.pop()
    first = next(iter(sets.values()), None)
    stats = channel_stats(full.x) if full is not None else (first.mean, first.std) if first is not None else None
    sources: dict[str, SyntheticSet | ArrayDataset | None] = {**({NO_PRETRAINING: None} if scratch else {}),
                                                              **sets, **({FULL_DATA: full} if full is not None else {})}
    rows = []
    for name, data in sources.items():
        k = data.num_classes if data is not None else next(iter(targets.values()))[0].num_classes
        backbone = pretrain(data, in_shape, k, config, stats=stats)
        for j, (target, (train, test)) in enumerate(targets.items()):
            acc = probe_accuracy(backbone.features(train.x), train.y, backbone.features(test.x), test.y,
                                 train.num_classes, config.probe_l2)
            rows.append({"set": name, "target": target, "protocol": "linear", "acc": acc})
            acc = finetune_accuracy(backbone, train, test, config, salt=1 + j)
            rows.append({"set": name, "target": target, "protocol": "finetune", "acc": acc})
    return pd.DataFrame(rows, columns=["set", "target", "protocol", "acc"])
