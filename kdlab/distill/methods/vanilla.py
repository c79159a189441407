"""The student trained on labels alone: the baseline every method is compared with."""
from __future__ import annotations

import torch

from kdlab.distill.base import CE_WEIGHT, Distiller, TeacherOutput, register_method


@register_method("vanilla")
class Vanilla(Distiller):
    """No distillation: ce_weight * CE(y). The teacher, if given, is ignored."""

    params = {"ce_weight": CE_WEIGHT}
    uses_teacher = False

    def losses(self, logits: torch.Tensor, feats: dict, teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ce": self.ce(logits, y)}
