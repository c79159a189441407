"""Source models as target teachers: a source feature extractor plus a head fitted on labelled target data.

``SourceTeacher`` wraps one source (frozen by default; ``finetune=True`` trains it all, the fine-tuning
baseline); ``SourceEnsemble`` holds several, with relevance weights, and predicts their weighted mixture.
``fit_head`` fits a head in closed loop (L-BFGS on float64 features) so every teacher's head is fitted on
its own, once.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.data.base import ArrayDataset, BatchLoader
from kdlab.distill.functional import pool_flatten
from kdlab.errors import ConfigError, ShapeError
from kdlab.models.taps import FeatureTaps, declared_layers

FLATTEN_LIMIT = 4096  # feature maps up to this size per sample are flattened, larger ones average-pooled


def as_vector(feat: torch.Tensor) -> torch.Tensor:
    """(N, ...) features as (N, D): flattened when small (keeps spatial layout), else globally pooled."""
    return feat.flatten(1) if feat[0].numel() <= FLATTEN_LIMIT else pool_flatten(feat)


def embedding_layer(model: nn.Module, layer: str | None = None) -> str:
    """``layer`` or the embedding tap the model declares (its last feature block)."""
    return layer or declared_layers(model, "embedding")[0]


@torch.no_grad()
def extract(model: nn.Module, data: ArrayDataset | torch.Tensor, layer: str | None = None,
            batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Features at ``layer`` (``as_vector``, float64 (N, D)) and class probabilities (float64 (N, K))."""
    layer = embedding_layer(model, layer)
    x = data.x if isinstance(data, ArrayDataset) else data
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    feats, probs = [], []
    with FeatureTaps(model, [layer], clone=False, detach=True) as taps:
        for start in range(0, len(x), batch_size):
            logits = model(x[start:start + batch_size].to(device))
            feats.append(as_vector(taps.pop()[layer]).double().cpu())
            probs.append(F.softmax(logits.double(), 1).cpu())
    model.train(was)
    return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def fit_head(features: np.ndarray, labels: np.ndarray | torch.Tensor, num_classes: int,
             l2: float = 1e-3, max_iter: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on standardised float64 ``features``; returns (weight, bias) that act
    on the raw features (the standardisation is folded in)."""
    f = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if f.ndim != 2 or len(f) != len(y):
        raise ShapeError(f"features {tuple(f.shape)} and labels {tuple(y.shape)} do not pair up")
    mu, sd = f.mean(0), f.std(0).clamp(min=1e-6)
    z = (f - mu) / sd
    w = torch.zeros(f.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ w + b, y) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    weight = (w.detach() / sd[:, None]).T  # (C, D)
    bias = b.detach() - weight @ mu
    return weight, bias


class SourceTeacher(nn.Module):
    """A source model's features at ``layer`` followed by a linear ``head`` for the target classes."""

    def __init__(self, source: nn.Module, num_classes: int, in_shape: Sequence[int], layer: str | None = None,
                 finetune: bool = False):
        super().__init__()
        self.source = source
        self.layer = embedding_layer(source, layer)
        self.finetune = finetune
        for p in source.parameters():
            p.requires_grad_(finetune)
        with torch.no_grad():
            was = source.training
            source.eval()
            dim = self.features(torch.zeros(2, *in_shape)).shape[1]
            source.train(was)
        self.head = nn.Linear(dim, num_classes)
        self.kdlab_taps = {"embedding": "head", "logits": "head"}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        with FeatureTaps(self.source, [self.layer], clone=False) as taps:
            self.source(x)
            return as_vector(taps.pop()[self.layer])

    def set_head(self, weight: torch.Tensor, bias: torch.Tensor) -> SourceTeacher:
        """Load a fitted head (e.g. from ``fit_head``)."""
        if tuple(weight.shape) != tuple(self.head.weight.shape):
            raise ShapeError(f"head weight {tuple(weight.shape)} does not fit {tuple(self.head.weight.shape)}")
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)
        return self

    def train(self, mode: bool = True) -> SourceTeacher:
        super().train(mode)
        if not self.finetune:  # a frozen extractor keeps its batch-norm statistics
            self.source.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SourceEnsemble(nn.Module):
    """Several ``SourceTeacher``s with relevance ``weights``; predicts log(sum_k w_k softmax(z_k)).

    ``member_logits(x)`` gives every member's logits (K, N, C) for methods that weight per-teacher losses.
    """

    def __init__(self, members: Sequence[SourceTeacher], weights: Sequence[float] | None = None,
                 names: Sequence[str] | None = None):
        super().__init__()
        if not members:
            raise ConfigError("sources: an ensemble needs at least one source teacher")
        self.members = nn.ModuleList(members)
        w = torch.ones(len(members)) if weights is None else torch.as_tensor(list(weights), dtype=torch.float32)
        if len(w) != len(members) or (w < 0).any() or float(w.sum()) <= 0:
            raise ConfigError(f"weights: need {len(members)} non-negative weights with a positive sum, "
                              f"got {list(map(float, w))}")
        self.register_buffer("weights", w / w.sum())
        self.names = list(names) if names is not None else [f"source{i}" for i in range(len(members))]
        self.kdlab_taps = {"logits": "members"}

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(self.member_logits(x), dim=2)  # (K, N, C)
        return torch.logsumexp(logp + self.weights.log()[:, None, None], dim=0)


def fit_teacher(source: nn.Module, labelled: ArrayDataset, layer: str | None = None,
                features: np.ndarray | None = None, l2: float = 1e-3) -> SourceTeacher:
    """A frozen ``SourceTeacher`` whose head is fitted on ``labelled`` (``features``: precomputed, reused)."""
    teacher = SourceTeacher(source, labelled.num_classes, labelled.in_shape, layer)
    if features is None:
        features, _ = extract(source, labelled, teacher.layer)
    return teacher.set_head(*fit_head(features, labelled.y, labelled.num_classes, l2))


@torch.no_grad()
def accuracy(model: nn.Module, data: ArrayDataset) -> float:
    """Top-1 accuracy of ``model`` on ``data``."""
    was = model.training
    model.eval()
    correct = sum(int((model(x).argmax(1) == y).sum()) for x, y, _ in BatchLoader(data, 512))
    model.train(was)
    return correct / max(len(data), 1)
