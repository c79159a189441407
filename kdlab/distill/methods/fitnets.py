"""FitNets hints (Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for Thin Deep
Nets", ICLR 2015).

A regressor (adapter) maps each student "guided" feature onto the teacher's "hint" feature and the
student is trained to reproduce it:

    L = ce_weight * CE + feat_weight * sum_pairs mean((r(F^S) - F^T)^2).

Adapters come from the probed shapes (kdlab.distill.adapters): conv -> conv is 1x1 conv + BN
(resized to the teacher's map), anything else pools both sides to vectors and maps them linearly,
so an MLP student can take hints from a CNN teacher. Unlike the paper's two-stage schedule (hint
pre-training, then KD), the hint term is trained jointly with the label loss, as in mdistiller
(whose default feat_weight is 100). By default every pair of aligned stages gives a hint (the last
stages of the deeper model are matched); pass teacher_layers / student_layers for a single hint.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.distill.adapters import match_teacher
from kdlab.distill.base import Distiller, TeacherOutput, feature_params, register_method
from kdlab.errors import ShapeError
from kdlab.registry import Param


def fitnets_loss(student_adapted: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the adapted student feature and the (rank-matched) teacher feature."""
    t = match_teacher(teacher_feat, student_adapted.ndim).to(student_adapted.dtype)
    if t.shape != student_adapted.shape:
        raise ShapeError(f"fitnets: adapted student feature {tuple(student_adapted.shape)} does not match "
                         f"the teacher feature {tuple(t.shape)}")
    return F.mse_loss(student_adapted, t)


@register_method("fitnets")
class FitNets(Distiller):
    """FitNets: ce + feat_weight * MSE(adapter(student feature), teacher feature) summed over hints."""

    # mdistiller's 100 suits a CIFAR ResNet hint at a middle stage; with the zoo's default pairing
    # (every aligned stage, the last included) 100 drowns the label loss of small students, 1 does not.
    params = feature_params(Param(1.0, "weight of the hint MSE (summed over layer pairs)", float, 0.0, 1e5))
    feature_kind = "stages"
    needs_adapters = True

    def losses(self, logits: torch.Tensor, feats: dict[str, torch.Tensor], teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        pairs = zip(self.adapters, self.layer_pairs(feats, teacher), strict=True)
        hint = sum(fitnets_loss(adapter(s), t) for adapter, (s, t) in pairs)
        return {"ce": self.ce(logits, y), "hint": self.hp["feat_weight"] * hint}
