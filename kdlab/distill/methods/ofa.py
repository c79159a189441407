"""One-for-All KD (Hao, Guo, Chen, Han, Zhang, Hu, Wang & Xu, "One-for-All: Bridge the Gap Between
Heterogeneous Architectures in Knowledge Distillation", NeurIPS 2023).

Intermediate student features are projected to the logit space by small branch heads; every branch
and the final logits are trained towards the teacher's (final) prediction with the OFA loss, whose
adaptive target enhancement raises the target-class weight by an exponent ``eps``.

Formulation (as in the authors' released code): with ``p_t`` the teacher's softmax at temperature
``T``, ``q`` the student's (or branch's) softmax at ``T`` and ``y`` the label,

    L_OFA = - ((1 + p_t[y])^eps - 1) * log q[y] - sum_{c != y} p_t[c]^eps * log q[c],

averaged over the batch. At ``eps = 1`` this is the soft cross-entropy ``-sum_c p_t[c] log q[c]``
(Hinton KD up to the teacher's entropy); ``eps > 1`` enhances the target class most when the
teacher is confident in it. The ``-1`` drops the one-hot part of ``(onehot + p_t)^eps``, which the
separate ``ce`` term already covers. No ``T^2`` factor is applied (the official default is T = 1).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.distill.base import CE_WEIGHT, Distiller, TeacherOutput, register_method
from kdlab.models.taps import chosen_layers, feature_shapes
from kdlab.registry import Param


def ofa_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
             eps: float = 1.0, temperature: float = 1.0) -> torch.Tensor:
    """OFA loss with adaptive target enhancement (see the module docstring), averaged over the batch."""
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    p_t = F.softmax(teacher_logits / temperature, dim=1)
    onehot = F.one_hot(labels, p_t.shape[1]).to(p_t.dtype)
    weight = (p_t + onehot).pow(eps) - onehot
    return -(weight * log_q).sum(dim=1).mean()


def branch_head(shape: Sequence[int], num_classes: int) -> nn.Module:
    """A small head from a per-sample feature ``shape`` to logits.

    Conv maps (C, H, W): conv3x3 + BN + ReLU, global average pool, linear. Tokens (L, D): LayerNorm,
    mean over tokens, linear. Vectors (D,): LayerNorm, linear.
    """
    shape = tuple(shape)
    if len(shape) == 3:
        c = shape[0]
        return nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
    if len(shape) == 2:
        return nn.Sequential(nn.LayerNorm(shape[-1]), _TokenMean(), nn.Linear(shape[-1], num_classes))
    d = shape[-1] if shape else 1
    return nn.Sequential(nn.Flatten(), nn.LayerNorm(d), nn.Linear(d, num_classes))


class _TokenMean(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


@register_method("ofa")
class OFA(Distiller):
    """One-for-All KD: branch heads on student stages plus final logits, all trained with the OFA loss."""

    params = {
        "ce_weight": CE_WEIGHT,
        "kd_weight": Param(1.0, "weight of the OFA loss on the student's final logits", float, 0.0, 100.0),
        "branch_weight": Param(1.0, "weight of the OFA losses summed over the stage branch heads",
                               float, 0.0, 100.0),
        "eps": Param(1.5, "target-enhancement exponent eps (1: plain soft cross-entropy)", float, 0.0, 10.0),
        "temperature": Param(1.0, "softmax temperature T of teacher and student", float, 0.05, 100.0),
        "student_layers": Param(None, "student module paths that get branch heads (None: declared stages)",
                                list),
    }

    def __init__(self, teacher: nn.Module | None, student: nn.Module, in_shape: Sequence[int], **params):
        super().__init__(teacher, student, in_shape, **params)
        # Only the student is tapped: the teacher gives its final logits, so its cache stays small.
        self.student_layers = chosen_layers(student, params.get("student_layers"), "stages")
        self.student_shapes = feature_shapes(student, self.student_layers, self.in_shape)
        self.branches = nn.ModuleList(branch_head(self.student_shapes[p], self.num_classes)
                                      for p in self.student_layers)

    def losses(self, logits: torch.Tensor, feats: dict[str, torch.Tensor], teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        eps, temp = self.hp["eps"], self.hp["temperature"]
        t_logits = teacher.logits
        heads = zip(self.student_layers, self.branches, strict=True)
        branch = sum((ofa_loss(head(feats[p]), t_logits, y, eps, temp) for p, head in heads),
                     logits.new_zeros(()))
        return {"ce": self.ce(logits, y),
                "ofa": self.hp["kd_weight"] * ofa_loss(logits, t_logits, y, eps, temp),
                "ofa_branches": self.hp["branch_weight"] * branch}
