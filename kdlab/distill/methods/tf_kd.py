"""Teacher-free KD (Yuan, Tay, Li, Wang & Feng, "Revisiting Knowledge Distillation via Label Smoothing
Regularization", CVPR 2020), the Tf-KD_reg variant: no teacher network; a hand-designed virtual teacher
puts probability ``a`` (``correct_prob``) on the label and spreads ``1 - a`` uniformly over the other
``K - 1`` classes.

Formulation implemented here: the virtual teacher's logits are ``log p^d``; softened with the
temperature ``T`` they give ``p^d_T ∝ (p^d)^(1/T)`` (exactly ``p^d`` at T = 1), and the loss is

    ce_weight * CE(z_s, y) + kd_weight * T^2 * KL(p^d_T || softmax(z_s / T)).

At T = 1 this is label smoothing towards a ``correct_prob`` target. (The authors' code instead
softens with ``softmax(p^d / T)`` and compares it with the un-softened student, averaging the KL
over classes as well; we use the standard temperature on both sides.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.distill.base import CE_WEIGHT, Distiller, TeacherOutput, register_method
from kdlab.registry import Param


def virtual_teacher(labels: torch.Tensor, num_classes: int, correct_prob: float = 0.9,
                    temperature: float = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N, K) virtual-teacher distribution: ``correct_prob`` on the label, the rest uniform, softened by T."""
    if num_classes < 2:
        return torch.ones(len(labels), num_classes, dtype=dtype, device=labels.device)
    other = (1.0 - correct_prob) / (num_classes - 1)
    p = torch.full((len(labels), num_classes), other, dtype=dtype, device=labels.device)
    p.scatter_(1, labels.unsqueeze(1), correct_prob)
    if temperature == 1.0:
        return p
    p = p.pow(1.0 / temperature)  # softmax(log p^d / T), keeping exact zeros (correct_prob = 1)
    return p / p.sum(dim=1, keepdim=True)


def tf_kd_loss(student_logits: torch.Tensor, labels: torch.Tensor, correct_prob: float = 0.9,
               temperature: float = 1.0) -> torch.Tensor:
    """``T^2 * KL(p^d_T || softmax(z_s / T))`` against the virtual teacher, averaged over the batch."""
    target = virtual_teacher(labels, student_logits.shape[1], correct_prob, temperature, student_logits.dtype)
    log_s = F.log_softmax(student_logits / temperature, dim=1)
    kl = (target * (target.clamp_min(1e-30).log() - log_s)).sum(dim=1).mean()
    return kl * temperature**2


@register_method("tf_kd")
class TfKD(Distiller):
    """Teacher-free KD: ce + kd_weight * KL to a virtual teacher (correct_prob on the label, rest uniform)."""

    params = {
        "ce_weight": CE_WEIGHT,
        "kd_weight": Param(1.0, "weight of the KL to the virtual teacher", float, 0.0, 100.0),
        "correct_prob": Param(0.9, "virtual teacher's probability of the correct class", float, 0.0, 1.0),
        "temperature": Param(1.0, "softmax temperature T of virtual teacher and student", float, 0.05, 100.0),
    }
    uses_teacher = False

    def losses(self, logits: torch.Tensor, feats: dict, teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        kd = tf_kd_loss(logits, y, self.hp["correct_prob"], self.hp["temperature"])
        return {"ce": self.ce(logits, y), "kd": self.hp["kd_weight"] * kd}
