"""ND loss (Wang, Wang, Li, Chen & Wang, "Improving Knowledge Distillation via Regularizing Feature Norm
and Direction", arXiv 2305.17007, 2023): KD plus a loss on the student's embedding that aligns its
direction with the teacher's class-mean embedding and encourages a large norm ("KD++").

Formulation (as in the authors' released code): with ``s`` the student embedding (projected to the
teacher's width by an adapter), ``t`` the teacher embedding of the same sample and ``e_y`` the unit
vector of the teacher's class-mean embedding for label ``y``,

    L_ND = mean_i [ 1 - <s_i, e_{y_i}> / max(||s_i||, ||t_i||) ].

While ``||s|| < ||t||`` the term rewards a larger student norm as well as alignment; once the student
norm exceeds the teacher's it is ``1 - cos(s, e_y)``. Embeddings are the model's declared
``embedding`` taps, conv maps globally average pooled (the penultimate feature of the paper).

Class means: the paper precomputes them from the teacher over the training set. Here they are a
buffer updated from the teacher embeddings of every training batch before the loss is computed:
``center_momentum = 0`` keeps the exact running mean of all teacher features seen (with a frozen
teacher and fixed inputs it equals the dataset class mean after one epoch); ``center_momentum > 0``
is an exponential moving average (the first batch of a class sets its mean). ``set_class_centers``
installs precomputed means and stops the updates.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.distill.base import CE_WEIGHT, LAYERS, Distiller, TeacherOutput, register_method
from kdlab.distill.functional import kl_div, pool_flatten
from kdlab.errors import ShapeError
from kdlab.registry import Param


def nd_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor, centers: torch.Tensor,
            labels: torch.Tensor) -> torch.Tensor:
    """``mean_i 1 - <s_i, e_{y_i}> / max(||s_i||, ||t_i||)`` with ``e_c`` the unit class-mean direction."""
    e = F.normalize(centers[labels], dim=1)
    proj = (student_emb * e).sum(dim=1)
    max_norm = torch.maximum(student_emb.norm(dim=1), teacher_emb.norm(dim=1)).clamp_min(1e-12)
    return (1.0 - proj / max_norm).mean()


def class_means(features: torch.Tensor, labels: torch.Tensor,
                num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean of ``features`` (N, D) and per-class counts; classes absent from ``labels`` get 0."""
    counts = torch.bincount(labels, minlength=num_classes).to(features.dtype)
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, features)
    return sums / counts.clamp_min(1).unsqueeze(1), counts


@register_method("nd")
class ND(Distiller):
    """KD++: ce + KD + nd_weight * ND loss (embedding norm and direction to teacher class means)."""

    params = {
        "ce_weight": CE_WEIGHT,
        "kd_weight": Param(1.0, "weight of the soft-target KL term", float, 0.0, 100.0),
        "temperature": Param(4.0, "softmax temperature T of the KL term", float, 0.05, 100.0),
        "nd_weight": Param(1.0, "weight of the ND (norm and direction) embedding loss", float, 0.0, 100.0),
        "center_momentum": Param(0.0, "EMA momentum of the teacher class means (0: exact running mean)",
                                 float, 0.0, 0.9999),
        "teacher_layers": LAYERS,
        "student_layers": LAYERS,
    }
    feature_kind = "embedding"
    needs_adapters = True

    def __init__(self, teacher: nn.Module | None, student: nn.Module, in_shape: Sequence[int], **params):
        super().__init__(teacher, student, in_shape, **params)
        if len(self.teacher_layers) != 1:
            raise ShapeError(f"nd distils one embedding layer, got teacher_layers={self.teacher_layers}")
        t_shape = self.teacher_shapes[self.teacher_layers[0]]
        dim = t_shape[0] if len(t_shape) == 3 else t_shape[-1]
        self.register_buffer("centers", torch.zeros(self.num_classes, dim))
        self.register_buffer("counts", torch.zeros(self.num_classes))
        self.register_buffer("centers_fixed", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def set_class_centers(self, centers: torch.Tensor) -> None:
        """Install precomputed teacher class means (num_classes, dim) and stop updating them."""
        if tuple(centers.shape) != tuple(self.centers.shape):
            raise ShapeError(f"centers must have shape {tuple(self.centers.shape)}, "
                             f"got {tuple(centers.shape)}")
        self.centers.copy_(centers)
        self.centers_fixed.fill_(True)

    @torch.no_grad()
    def update_centers(self, t_emb: torch.Tensor, y: torch.Tensor) -> None:
        """Fold one batch of teacher embeddings into the class means (running mean or EMA)."""
        if bool(self.centers_fixed):
            return
        means, n = class_means(t_emb.float(), y, self.num_classes)
        seen = n > 0
        m = self.hp["center_momentum"]
        if m > 0:
            first = seen & (self.counts == 0)
            upd = seen & ~first
            self.centers[first] = means[first]
            self.centers[upd] = m * self.centers[upd] + (1 - m) * means[upd]
        else:
            total = self.counts + n
            w_old = (self.counts / total.clamp_min(1)).unsqueeze(1)
            self.centers[seen] = (w_old * self.centers + (1 - w_old) * means)[seen]
        self.counts += n

    def losses(self, logits: torch.Tensor, feats: dict[str, torch.Tensor], teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        t_emb = pool_flatten(teacher.features[self.teacher_layers[0]])
        s_emb = pool_flatten(self.adapters[0](feats[self.student_layers[0]]))
        if self.training:
            self.update_centers(t_emb, y)
        nd = nd_loss(s_emb, t_emb.to(s_emb.dtype), self.centers.to(s_emb.dtype), y)
        return {"ce": self.ce(logits, y),
                "kd": self.hp["kd_weight"] * kl_div(logits, teacher.logits, self.hp["temperature"]),
                "nd": self.hp["nd_weight"] * nd}
