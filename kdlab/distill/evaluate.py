"""Evaluation of a classifier on a dataset: accuracy, loss and agreement with reference logits."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.data.base import BatchLoader


@dataclass
class Evaluation:
    """Summed counts over a (possibly sharded) pass; ``reduce`` across processes before reading."""

    correct: float = 0.0
    loss_sum: float = 0.0
    agree: float = 0.0
    n: float = 0.0

    @property
    def acc(self) -> float:
        return self.correct / max(self.n, 1.0)

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.n, 1.0)

    @property
    def agreement(self) -> float:
        return self.agree / max(self.n, 1.0)


def score(logits: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor | None = None) -> Evaluation:
    """Accuracy, CE and agreement with ``reference`` logits from logits already computed (no forward)."""
    logits, labels = logits.float().cpu(), labels.cpu()
    pred = logits.argmax(1)
    agree = float((pred == reference.cpu().argmax(1)).sum()) if reference is not None else 0.0
    return Evaluation(float((pred == labels).sum()), float(F.cross_entropy(logits, labels, reduction="sum")),
                      agree, float(len(labels)))


@torch.no_grad()
def evaluate(model: nn.Module, loader: BatchLoader, device: torch.device | str,
             reference: torch.Tensor | None = None) -> Evaluation:
    """Accuracy and mean CE of ``model`` over ``loader``; agreement with ``reference`` logits (by index)."""
    was = model.training
    model.eval()
    ev = Evaluation()
    for x, y, idx in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x).float()
        pred = logits.argmax(1)
        ev.correct += float((pred == y).sum())
        ev.loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        ev.n += len(y)
        if reference is not None:
            ev.agree += float((pred.cpu() == reference[idx].argmax(1)).sum())
    model.train(was)
    return ev
