"""Vanilla knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
Network", 2015): KL between temperature-softened teacher and student distributions, scaled by T^2."""
from __future__ import annotations

import torch

from kdlab.distill.base import CE_WEIGHT, Distiller, TeacherOutput, register_method
from kdlab.distill.functional import kl_div
from kdlab.registry import Param


@register_method("kd")
class KD(Distiller):
    """Hinton KD: ce_weight * CE(y) + kd_weight * T^2 * KL(p_t^T || p_s^T)."""

    params = {
        "ce_weight": CE_WEIGHT,
        "kd_weight": Param(1.0, "weight of the soft-target KL term", float, 0.0, 100.0),
        "temperature": Param(4.0, "softmax temperature T for both distributions", float, 0.05, 100.0),
    }

    def losses(self, logits: torch.Tensor, feats: dict, teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        kd = kl_div(logits, teacher.logits, self.hp["temperature"])
        return {"ce": self.ce(logits, y), "kd": self.hp["kd_weight"] * kd}
