"""Margin-MSE (Hofstätter, Althammer, Schröder, Sertkan & Hanbury, "Improving Efficient Neural Ranking
Models with Cross-Architecture Knowledge Distillation", arXiv 2010.02666, 2020).

For ranking, the student matches the teacher's score *margin* between a relevant and a non-relevant
passage rather than the raw scores: ``MSE(s_pos - s_neg, t_pos - t_neg)`` (``margin_mse``), so
models with differently scaled or shifted scores can distil into each other.

As a classifier method (``margin_mse_logits``) the label's logit plays the positive passage and every
other class a negative one: per sample the ``C - 1`` margins ``z[y] - z[c]`` (``c != y``) of student and
teacher are compared by MSE, averaged over samples and margins. Adding a constant to all logits of
either model leaves the loss unchanged.
"""
from __future__ import annotations

import torch

from kdlab.distill.base import CE_WEIGHT, Distiller, TeacherOutput, register_method
from kdlab.registry import Param


def margin_mse(student_pos: torch.Tensor, student_neg: torch.Tensor, teacher_pos: torch.Tensor,
               teacher_neg: torch.Tensor) -> torch.Tensor:
    """Mean of ``((s_pos - s_neg) - (t_pos - t_neg))^2`` over all (query, pos, neg) triples."""
    return ((student_pos - student_neg) - (teacher_pos - teacher_neg).to(student_pos.dtype)).pow(2).mean()


def label_margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N, C - 1) margins ``z[y] - z[c]`` for every class ``c != y`` (in class order)."""
    n, c = logits.shape
    pos = logits.gather(1, labels.unsqueeze(1))
    keep = torch.ones(n, c, dtype=torch.bool, device=logits.device)
    keep[torch.arange(n, device=logits.device), labels] = False
    return (pos - logits)[keep].view(n, c - 1)


def margin_mse_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor) -> torch.Tensor:
    """Margin-MSE of a classifier: the label logit is the positive, every other class a negative."""
    return (label_margins(student_logits, labels)
            - label_margins(teacher_logits.to(student_logits.dtype), labels)).pow(2).mean()


@register_method("margin_mse")
class MarginMSE(Distiller):
    """Margin-MSE: ce + kd_weight * MSE of label-vs-other logit margins of student and teacher."""

    params = {
        "ce_weight": CE_WEIGHT,
        "kd_weight": Param(1.0, "weight of the margin MSE term", float, 0.0, 100.0),
    }

    def losses(self, logits: torch.Tensor, feats: dict, teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ce": self.ce(logits, y),
                "kd": self.hp["kd_weight"] * margin_mse_logits(logits, teacher.logits, y)}
