"""KD on mixup-interpolated inputs: mixup (Zhang, Cisse, Dauphin & Lopez-Paz, "mixup: Beyond Empirical
Risk Minimization", ICLR 2018) as the input augmentation of "function matching" (Beyer, Zhai, Royer,
Markeeva, Anil & Kolesnikov, "Knowledge distillation: A good teacher is patient and consistent",
CVPR 2022): teacher and student see the *same* mixed image, so the student matches the teacher's
function between training points.

Each step draws ``lam ~ Beta(mixup_alpha, mixup_alpha)`` and a batch permutation from torch's global
RNG (deterministic given ``torch.manual_seed``), forms ``x_mix = lam * x + (1 - lam) * x[perm]`` and
minimises

    ce_weight * (lam * CE(z_s, y) + (1 - lam) * CE(z_s, y[perm])) + kd_weight * T^2 * KL(p_t^T || p_s^T)

on ``x_mix``. ``ce_weight = 0`` is Beyer et al.'s pure function matching. The teacher must run on the
mixed batch every step, so the method is not cacheable; a cached ``teacher_out`` is ignored. The logits
returned for telemetry are the student's on the mixed batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.distill.base import CE_WEIGHT, Distiller, TeacherOutput, register_method
from kdlab.distill.functional import kl_div
from kdlab.registry import Param


def mixup(x: torch.Tensor, lam: float, perm: torch.Tensor) -> torch.Tensor:
    """``lam * x + (1 - lam) * x[perm]``."""
    return lam * x + (1.0 - lam) * x[perm]


def mixup_cross_entropy(logits: torch.Tensor, y: torch.Tensor, y_perm: torch.Tensor,
                        lam: float) -> torch.Tensor:
    """Label cross-entropy of a mixed batch: ``lam * CE(y) + (1 - lam) * CE(y[perm])``."""
    return lam * F.cross_entropy(logits, y) + (1.0 - lam) * F.cross_entropy(logits, y_perm)


def sample_mixup(n: int, alpha: float, device: torch.device | str = "cpu") -> tuple[float, torch.Tensor]:
    """``(lam, perm)`` from torch's global RNG: ``lam ~ Beta(alpha, alpha)`` and a permutation of ``n``."""
    a = torch.tensor(float(alpha))
    lam = float(torch.distributions.Beta(a, a).sample())
    return lam, torch.randperm(n).to(device)


@register_method("mixup_kd")
class MixupKD(Distiller):
    """KD on mixup inputs: teacher and student see the same mixed batch (function matching)."""

    params = {
        "ce_weight": CE_WEIGHT,
        "kd_weight": Param(1.0, "weight of the soft-target KL on the mixed batch", float, 0.0, 100.0),
        "temperature": Param(1.0, "softmax temperature T for both distributions", float, 0.05, 100.0),
        "mixup_alpha": Param(1.0, "concentration of Beta(mixup_alpha, mixup_alpha) for the mixing weight",
                             float, 0.01, 100.0),
    }
    cacheable = False

    def forward_train(self, x: torch.Tensor, y: torch.Tensor,
                      teacher_out: TeacherOutput | None = None) -> tuple[torch.Tensor, dict]:
        lam, perm = sample_mixup(len(x), self.hp["mixup_alpha"], x.device)
        x_mix = mixup(x, lam, perm)
        t_logits = self.teacher_forward(x_mix).logits
        logits, _ = self.student_forward(x_mix)
        return logits, {
            "ce": self.hp["ce_weight"] * mixup_cross_entropy(logits, y, y[perm], lam),
            "kd": self.hp["kd_weight"] * kl_div(logits, t_logits, self.hp["temperature"]),
        }
