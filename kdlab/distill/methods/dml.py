"""Deep mutual learning (Zhang, Xiang, Hospedales & Lu, "Deep Mutual Learning", CVPR 2018): online
distillation with no pre-trained teacher. Two networks (here "student" and its "peer", the model
passed as teacher) train together, each on its labels plus a KL towards the other's predictions:

    student: ce_weight * CE(z_s, y) + kd_weight * T^2 * KL(p_peer^T || p_s^T)      terms ce, kl
    peer:    ce_weight * CE(z_p, y) + kd_weight * T^2 * KL(p_s^T || p_peer^T)      terms peer_ce, peer_kl

Each KL's target is detached, so a term's gradient reaches only the network it belongs to and one
backward pass of the summed terms is DML's alternating update done simultaneously. The peer runs in
training mode with gradients (``trains_teacher = True``); its outputs cannot be cached.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.distill.base import CE_WEIGHT, Distiller, TeacherOutput, register_method
from kdlab.distill.functional import kl_div
from kdlab.registry import Param


def mutual_losses(logits_a: torch.Tensor, logits_b: torch.Tensor, y: torch.Tensor, temperature: float = 1.0,
                  ce_weight: float = 1.0, kd_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """DML terms for networks a and b: ``ce``, ``kl`` (a's) and ``peer_ce``, ``peer_kl`` (b's)."""
    return {
        "ce": ce_weight * F.cross_entropy(logits_a, y),
        "kl": kd_weight * kl_div(logits_a, logits_b.detach(), temperature),
        "peer_ce": ce_weight * F.cross_entropy(logits_b, y),
        "peer_kl": kd_weight * kl_div(logits_b, logits_a.detach(), temperature),
    }


@register_method("dml")
class DML(Distiller):
    """Deep mutual learning: student and peer (teacher slot) both train, each with CE + KL to the other."""

    params = {
        "ce_weight": CE_WEIGHT,
        "kd_weight": Param(1.0, "weight of each network's KL to the other's predictions", float, 0.0, 100.0),
        "temperature": Param(1.0, "softmax temperature T of the mutual KL terms", float, 0.05, 100.0),
    }
    trains_teacher = True
    cacheable = False

    def forward_train(self, x: torch.Tensor, y: torch.Tensor,
                      teacher_out: TeacherOutput | None = None) -> tuple[torch.Tensor, dict]:
        logits, _ = self.student_forward(x)
        peer_logits = self.teacher(x)
        return logits, mutual_losses(logits, peer_logits, y, self.hp["temperature"], self.hp["ce_weight"],
                                     self.hp["kd_weight"])
