"""Teacher-student agreement: top-1 agreement, KL fidelity, per-class accuracy gap and calibration (ECE).

Fidelity in the sense of Stanton et al., "Does Knowledge Distillation Really Work?" (NeurIPS 2021): how
closely the student matches the teacher's predictive distribution, not only the labels. Float64 numpy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from kdlab.errors import ConfigError, ShapeError
from kdlab.models.inference import predict


def _logits(a: Any, name: str) -> np.ndarray:
    x = (a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)).astype(np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ShapeError(f"{name}: expected logits of shape (samples, classes >= 2), got {x.shape}")
    if not np.isfinite(x).all():
        raise ConfigError(f"{name}: logits hold NaN or infinite values")
    return x


def log_softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise log-softmax of ``z / temperature`` (stable, float64)."""
    z = z / temperature
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error of the top-1 prediction over ``n_bins`` equal-width confidence bins
    (Guo et al. 2017): sum over bins of (bin size / N) |accuracy - mean confidence|; bin b holds
    confidences in (b/n, (b+1)/n], the first bin also 0."""
    if n_bins < 1:
        raise ConfigError(f"n_bins: must be >= 1, got {n_bins}")
    conf, correct = probs.max(1), (probs.argmax(1) == labels).astype(np.float64)
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    gap = np.abs(np.bincount(idx, correct, n_bins) - np.bincount(idx, conf, n_bins))
    return float(gap.sum() / max(len(labels), 1)) if count.sum() else float("nan")


@dataclass
class Agreement:
    """How a student's outputs relate to its teacher's on the same samples."""

    top1: float  # fraction of samples where the argmaxes agree
    kl: float  # mean KL(teacher || student) at ``temperature``, nats
    teacher_acc: float
    student_acc: float
    teacher_ece: float
    student_ece: float
    per_class: pd.DataFrame  # class, n, teacher_acc, student_acc, gap (student - teacher), agreement
    agree: np.ndarray = field(repr=False)  # per-sample bool: teacher and student predict the same class
    temperature: float = 1.0

    def summary(self) -> dict[str, float]:
        return {"top1_agreement": self.top1, "kl_fidelity": self.kl, "teacher_acc": self.teacher_acc,
                "student_acc": self.student_acc, "teacher_ece": self.teacher_ece, "student_ece": self.student_ece}


def agreement(teacher_logits: Any, student_logits: Any, labels: Any, class_names: list[str] | None = None,
              temperature: float = 1.0, n_bins: int = 15) -> Agreement:
    """Agreement, KL fidelity, per-class accuracy gap and ECE of both models from their logits (N, C)."""
    t, s = _logits(teacher_logits, "teacher_logits"), _logits(student_logits, "student_logits")
    y = (labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)).astype(np.int64)
    if t.shape != s.shape or len(y) != len(t):
        raise ShapeError(f"teacher {t.shape}, student {s.shape} and labels ({len(y)},) must match")
    if not temperature > 0:
        raise ConfigError(f"temperature: must be > 0, got {temperature}")
    c = t.shape[1]
    if len(y) and (y.min() < 0 or y.max() >= c):
        raise ShapeError(f"labels: must lie in [0, {c}), got range [{y.min()}, {y.max()}]")
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ShapeError(f"class_names: {len(names)} names for {c} classes")
    lt, ls = log_softmax(t, temperature), log_softmax(s, temperature)
    kl = float((np.exp(lt) * (lt - ls)).sum(1).mean())
    pt, ps = t.argmax(1), s.argmax(1)
    agree = pt == ps
    rows = []
    for k in range(c):
        m = y == k
        n = int(m.sum())
        ta = float((pt[m] == k).mean()) if n else float("nan")
        sa = float((ps[m] == k).mean()) if n else float("nan")
        rows.append({"class": names[k], "n": n, "teacher_acc": ta, "student_acc": sa, "gap": sa - ta,
                     "agreement": float(agree[m].mean()) if n else float("nan")})
    return Agreement(top1=float(agree.mean()), kl=kl, teacher_acc=float((pt == y).mean()),
                     student_acc=float((ps == y).mean()), teacher_ece=ece(np.exp(log_softmax(t)), y, n_bins),
                     student_ece=ece(np.exp(log_softmax(s)), y, n_bins), per_class=pd.DataFrame(rows), agree=agree,
                     temperature=temperature)


def model_agreement(teacher: torch.nn.Module, student: torch.nn.Module, data: Any, **kwargs: Any) -> Agreement:
    """``agreement`` of two models on an ``ArrayDataset`` (logits from ``kdlab.models.inference.predict``)."""
    return agreement(predict(teacher, data), predict(student, data), data.y, list(data.classes), **kwargs)
