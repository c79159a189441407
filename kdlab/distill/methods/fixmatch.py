"""FixMatch (Sohn et al., "FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence",
NeurIPS 2020), the semi-supervised baseline of source selection: no teacher; the student's confident
predictions on weakly augmented unlabelled images are the hard pseudo-labels of strongly augmented copies.

Loss: ce_weight * CE(weak(x), y) + unlabelled_weight * mean_u[ 1(max p(weak(u)) >= threshold) CE(strong(u), argmax) ].
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from kdlab.distill.base import CE_WEIGHT, TeacherOutput, register_method
from kdlab.distill.methods.unlabelled import UNLABELLED_PARAMS, SemiSupervised, strong_augment, weak_augment
from kdlab.registry import Param


@register_method("fixmatch")
class FixMatch(SemiSupervised):
    """FixMatch: CE on weakly augmented labels + confidence-masked pseudo-label CE on strong augmentations."""

    params: ClassVar[dict[str, Param]] = {
        "ce_weight": CE_WEIGHT,
        "unlabelled_weight": Param(1.0, "weight lambda_u of the pseudo-label term", float, 0.0, 100.0),
        "threshold": Param(0.95, "confidence a weak-view prediction needs to become a pseudo-label", float,
                           0.0, 1.0),
        **UNLABELLED_PARAMS,
    }
    uses_teacher = False

    def forward_train(self, x: torch.Tensor, y: torch.Tensor,
                      teacher_out: TeacherOutput | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = self.unlabelled_batch(len(x), x.device)
        if batch is None:
            logits = self.student(weak_augment(x))
            return logits, {"ce": self.ce(logits, y)}
        xu = batch[0]
        out = self.student(torch.cat([weak_augment(x), weak_augment(xu), strong_augment(xu)]))
        logits, weak, strong = out[:len(x)], *out[len(x):].chunk(2)
        conf, pseudo = F.softmax(weak.detach(), 1).max(1)
        mask = (conf >= self.hp["threshold"]).float()
        unl = (F.cross_entropy(strong, pseudo, reduction="none") * mask).mean()
        return logits, {"ce": self.ce(logits, y), "pseudo": self.hp["unlabelled_weight"] * unl}
