"""DistillNearest (Borup, Phoo & Hariharan, "Distilling from Similar Tasks for Transfer Learning on a Budget",
2023): distil the one source most similar to the target (picked by a task-similarity metric, see
``kdlab.transfer.rank_sources``) into a small student, on the labelled and the unlabelled target images.

The teacher is the source's feature extractor with a head fitted on the labelled target data
(``kdlab.transfer.fit_teacher`` or the ``"zoo:<source>"`` model). Loss: ce_weight * CE(y) on labelled
images + kd_weight * T^2 * KL(teacher || student) on labelled and unlabelled images together.
"""
from __future__ import annotations

from typing import ClassVar

import torch

from kdlab.distill.base import CE_WEIGHT, TeacherOutput, register_method
from kdlab.distill.functional import kl_div
from kdlab.distill.methods.unlabelled import UNLABELLED_PARAMS, SemiSupervised
from kdlab.registry import Param

KD_PARAMS: dict[str, Param] = {
    "ce_weight": CE_WEIGHT,
    "kd_weight": Param(1.0, "weight of the soft-target KL term (labelled + unlabelled images)", float, 0.0, 100.0),
    "temperature": Param(2.0, "softmax temperature T of teacher and student", float, 0.05, 100.0),
    **UNLABELLED_PARAMS,
}


@register_method("distill_nearest")
class DistillNearest(SemiSupervised):
    """Single-source distillation on labelled + unlabelled target images: CE(y) + T^2 KL(p_t^T || p_s^T)."""

    params: ClassVar[dict[str, Param]] = dict(KD_PARAMS)

    # -- teacher targets: what a method distils, per sample ------------------------------------------
    def teacher_targets(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample teacher outputs the KD term matches: here the teacher's logits (N, C)."""
        return self.teacher(x)

    def combine(self, targets: torch.Tensor) -> torch.Tensor:
        """The teacher's prediction from its targets (for agreement/val metrics)."""
        return targets

    def kd_term(self, student_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return kl_div(student_logits, targets, self.hp["temperature"])

    # -- the contract ---------------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_forward(self, x: torch.Tensor) -> TeacherOutput:
        targets = self.teacher_targets(x).detach()
        return TeacherOutput(self.combine(targets), {"targets": targets})

    @torch.no_grad()
    def _pool_targets(self, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Teacher targets of pool images, computed once for the whole pool (frozen teacher, no augmentation)."""
        if self._pool_cache is None:
            was = self.teacher.training
            self.teacher.eval()
            parts = [self.teacher_targets(self._pool[i:i + 512].to(device)).cpu()
                     for i in range(0, len(self._pool), 512)]
            self.teacher.train(was)
            self._pool_cache = torch.cat(parts)
        return self._pool_cache[idx].to(device)

    def forward_train(self, x: torch.Tensor, y: torch.Tensor,
                      teacher_out: TeacherOutput | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if teacher_out is None:
            teacher_out = self.teacher_forward(x)
        batch = self.unlabelled_batch(len(x), x.device)
        if batch is None:
            logits = self.student(x)
            all_logits, targets = logits, teacher_out.features["targets"]
        else:
            xu, idx = batch
            all_logits = self.student(torch.cat([x, xu]))
            logits = all_logits[:len(x)]
            targets = torch.cat([teacher_out.features["targets"], self._pool_targets(idx, x.device)])
        return logits, {"ce": self.ce(logits, y), "kd": self.hp["kd_weight"] * self.kd_term(all_logits, targets)}
