"""Born-again networks (Furlanello, Lipton, Tschannen, Itti & Anandkumar, "Born Again Neural Networks",
ICML 2018): self-distillation, where the teacher is a trained network of the student's own
architecture and the student is a fresh copy trained to match it.

The loss is Hinton KD, ``ce_weight * CE(y) + kd_weight * T^2 * KL(p_t^T || p_s^T)``, with the paper's
T = 1 by default (``ce_weight = 0`` is the paper's pure teacher-matching objective). Generations
(student k becomes the teacher of student k + 1, and the ensemble of generations) are run-level
choices, not part of the loss. The teacher is checked to be the same architecture as the student:
same class and the same parameter names and shapes; a mismatch warns, or raises ``ConfigError`` when
``require_same_arch`` is true.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from kdlab.distill.base import CE_WEIGHT, Distiller, TeacherOutput, register_method
from kdlab.distill.functional import kl_div
from kdlab.errors import ConfigError
from kdlab.registry import Param


def architecture_mismatch(teacher: nn.Module, student: nn.Module) -> str | None:
    """Why ``teacher`` is not the student's architecture (class, parameter names or shapes), or None."""
    if type(teacher) is not type(student):
        return f"teacher is a {type(teacher).__name__}, student a {type(student).__name__}"
    t_shapes = {k: tuple(v.shape) for k, v in teacher.state_dict().items()}
    s_shapes = {k: tuple(v.shape) for k, v in student.state_dict().items()}
    if t_shapes != s_shapes:
        diff = sorted(k for k in set(t_shapes) | set(s_shapes) if t_shapes.get(k) != s_shapes.get(k))
        first = diff[0]
        return (f"teacher and student {type(student).__name__}s differ in {len(diff)} tensors "
                f"(first: {first!r}: {t_shapes.get(first)} vs {s_shapes.get(first)})")
    return None


@register_method("born_again")
class BornAgain(Distiller):
    """Born-again self-distillation: KD from a teacher of the student's own architecture."""

    params = {
        "ce_weight": CE_WEIGHT,
        "kd_weight": Param(1.0, "weight of the soft-target KL term", float, 0.0, 100.0),
        "temperature": Param(1.0, "softmax temperature T for both distributions", float, 0.05, 100.0),
        "require_same_arch": Param(False, "raise (not just warn) when the teacher's architecture differs",
                                   bool),
    }

    def __init__(self, teacher: nn.Module | None, student: nn.Module, in_shape: Sequence[int], **params):
        super().__init__(teacher, student, in_shape, **params)
        why = architecture_mismatch(teacher, student)
        if why:
            msg = f"born_again expects a teacher of the student's architecture: {why}"
            if params.get("require_same_arch"):
                raise ConfigError(msg)
            warnings.warn(msg, UserWarning, stacklevel=2)

    def losses(self, logits: torch.Tensor, feats: dict, teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        kd = kl_div(logits, teacher.logits, self.hp["temperature"])
        return {"ce": self.ce(logits, y), "kd": self.hp["kd_weight"] * kd}
