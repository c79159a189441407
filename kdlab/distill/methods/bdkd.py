"""Balanced-divergence KD (Amara, Sepahvand, Meyer, Gross & Clark, "BD-KD: Balancing the Divergences for
Online Knowledge Distillation", arXiv 2212.12965, 2022).

The student's distillation term mixes the forward KL ``KL(p_t || p_s)`` (mean-covering: softens the
student) and the reverse KL ``KL(p_s || p_t)`` (mode-seeking: sharpens it) with per-sample weights
chosen by the entropy gap between student and teacher, to balance the student's confidence.

Formulation implemented here (per sample ``i``, distributions at temperature ``T``):

    gap_i = H(p_s,i) - H(p_t,i)          (computed without gradient)
    w_rev,i = dominant_weight if gap_i > 0 else other_weight
    w_fwd,i = other_weight    if gap_i > 0 else dominant_weight
    L_BD = T^2 * mean_i [ w_fwd,i * KL(p_t,i || p_s,i) + w_rev,i * KL(p_s,i || p_t,i) ]

A student less confident than the teacher on a sample (higher entropy) is pulled mainly by the
reverse KL, an over-confident one by the forward KL. With ``dominant_weight == other_weight == w``
it is ``w * T^2 * (forward KL + reverse KL)``. This is the offline (frozen teacher) student objective;
the paper's online variant also trains the teacher (see ``dml`` for an online set-up).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.distill.base import CE_WEIGHT, Distiller, TeacherOutput, register_method
from kdlab.registry import Param


def entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-sample Shannon entropy (nats) of ``softmax(logits / T)``."""
    log_p = F.log_softmax(logits / temperature, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def bd_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
               dominant_weight: float = 2.0, other_weight: float = 1.0) -> torch.Tensor:
    """Entropy-gap weighted forward + reverse KL, scaled by T^2, averaged over the batch."""
    log_s = F.log_softmax(student_logits / temperature, dim=1)
    log_t = F.log_softmax(teacher_logits / temperature, dim=1)
    fwd = (log_t.exp() * (log_t - log_s)).sum(dim=1)
    rev = (log_s.exp() * (log_s - log_t)).sum(dim=1)
    with torch.no_grad():
        student_less_sure = entropy(student_logits, temperature) > entropy(teacher_logits, temperature)
    w_rev = torch.where(student_less_sure, dominant_weight, other_weight).to(fwd.dtype)
    w_fwd = torch.where(student_less_sure, other_weight, dominant_weight).to(fwd.dtype)
    return (w_fwd * fwd + w_rev * rev).mean() * temperature**2


@register_method("bdkd")
class BDKD(Distiller):
    """BD-KD: ce + kd_weight * entropy-gap weighted forward + reverse KL."""

    params = {
        "ce_weight": CE_WEIGHT,
        "kd_weight": Param(1.0, "weight of the balanced-divergence term", float, 0.0, 100.0),
        "temperature": Param(4.0, "softmax temperature T of both distributions", float, 0.05, 100.0),
        "dominant_weight": Param(2.0, "weight of the divergence favoured by the entropy gap",
                                 float, 0.0, 100.0),
        "other_weight": Param(1.0, "weight of the other divergence", float, 0.0, 100.0),
    }

    def losses(self, logits: torch.Tensor, feats: dict, teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        bd = bd_kd_loss(logits, teacher.logits, self.hp["temperature"], self.hp["dominant_weight"],
                        self.hp["other_weight"])
        return {"ce": self.ce(logits, y), "kd": self.hp["kd_weight"] * bd}
