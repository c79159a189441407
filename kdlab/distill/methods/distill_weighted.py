"""DistillWeighted (Borup, Phoo & Hariharan, "Distilling from Similar Tasks for Transfer Learning on a Budget",
2023): distil several sources at once, each weighted by its relevance to the target task.

The teacher holds K source teachers (feature extractor + head fitted on the labelled target data) and their
weights w (``kdlab.transfer.SourceEnsemble``: w = ``source_weights(scores, temperature)``, a softmax of the
standardised task-similarity scores). Declared weighting: the KD term is the weighted sum of per-teacher
terms, sum_k w_k T^2 KL(p_k^T || p_s^T), on labelled and unlabelled images; ``weighting="uniform"`` sets
w_k = 1/K (the uniform multi-teacher baseline). A teacher without ``member_logits`` counts as K = 1.
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from kdlab.distill.base import register_method
from kdlab.distill.functional import kl_div
from kdlab.distill.methods.distill_nearest import KD_PARAMS, DistillNearest
from kdlab.registry import Param


@register_method("distill_weighted")
class DistillWeighted(DistillNearest):
    """Relevance-weighted multi-source distillation: CE(y) + sum_k w_k T^2 KL(p_k^T || p_s^T)."""

    params: ClassVar[dict[str, Param]] = {
        **KD_PARAMS,
        "weighting": Param("relevance", "relevance: the teacher's weights (from task similarity); uniform: 1/K",
                           str, choices=("relevance", "uniform")),
    }

    def teacher_weights(self) -> torch.Tensor:
        """w (K,), summing to 1."""
        w = getattr(self.teacher, "weights", None)
        k = len(getattr(self.teacher, "members", [])) or 1
        if w is None or self.hp["weighting"] == "uniform" or k == 1:
            return torch.full((k,), 1.0 / k)
        return w.detach().float().cpu() / w.sum().cpu()

    def teacher_targets(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's logits, (N, K, C)."""
        member = getattr(self.teacher, "member_logits", None)
        return member(x).transpose(0, 1) if member is not None else self.teacher(x)[:, None]

    def combine(self, targets: torch.Tensor) -> torch.Tensor:
        w = self.teacher_weights().to(targets.device)
        return torch.logsumexp(F.log_softmax(targets, 2) + w.log()[None, :, None], dim=1)

    def kd_term(self, student_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        w = self.teacher_weights().to(student_logits.device)
        t = self.hp["temperature"]
        return sum(w[k] * kl_div(student_logits, targets[:, k], t) for k in range(targets.shape[1]))
