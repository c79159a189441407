"""Dual-head optimisation (Kang, Lee, Jang & Hwang, "Simple Semi-supervised Knowledge Distillation from
Vision-Language Models via Dual-Head Optimization", arXiv 2505.07675, 2025).

The student gets two linear heads on the same embedding: the CE head (here the student's own
classifier) learns from labels, a new KD head learns from the teacher's soft targets, so the two
signals do not fight over one head. At inference the heads' probabilities are mixed:

    p = alpha * softmax(h_ce) + (1 - alpha) * softmax(h_kd / beta),

and ``forward`` returns ``log p`` as logits (argmax and log-likelihoods are those of the mixture).
``alpha`` and ``beta`` keep the paper's names (``beta`` is the inference temperature of the KD head,
``infer_temperature`` here); note that the authors' code weights the KD head by ``alpha`` instead.
Training: ``ce_weight * CE(h_ce, y) + kd_weight * T^2 * KL(p_t^T || softmax(h_kd / T))`` (code
defaults: 0.5, 0.5, T = 2).

The KD head reads the output of the student's declared ``embedding`` tap, flattened: for the zoo
models that is exactly the input of their classifier.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.distill.base import Distiller, TeacherOutput, register_method
from kdlab.distill.functional import kl_div
from kdlab.errors import ConfigError
from kdlab.models.taps import chosen_layers, feature_shapes
from kdlab.registry import Param


def dual_head_log_probs(ce_logits: torch.Tensor, kd_logits: torch.Tensor, alpha: float,
                        infer_temperature: float = 1.0) -> torch.Tensor:
    """``log(alpha * softmax(ce) + (1 - alpha) * softmax(kd / beta))``, computed stably in log space."""
    log_ce = F.log_softmax(ce_logits, dim=1)
    log_kd = F.log_softmax(kd_logits / infer_temperature, dim=1)
    if alpha >= 1.0:
        return log_ce
    if alpha <= 0.0:
        return log_kd
    return torch.logaddexp(log_ce + math.log(alpha), log_kd + math.log1p(-alpha))


@register_method("dho")
class DHO(Distiller):
    """Dual-head KD: CE head on labels, extra KD head on teacher targets, mixed at inference."""

    params = {
        "ce_weight": Param(0.5, "weight of the CE head's cross-entropy on labels", float, 0.0, 100.0),
        "kd_weight": Param(0.5, "weight of the KD head's soft-target KL", float, 0.0, 100.0),
        "temperature": Param(2.0, "training temperature T of the KD head's KL", float, 0.05, 100.0),
        "alpha": Param(0.5, "inference weight of the CE head's probabilities (paper's alpha)",
                       float, 0.0, 1.0),
        "infer_temperature": Param(1.0, "inference temperature of the KD head (paper's beta)",
                                   float, 0.05, 100.0),
        "student_layers": Param(None, "student embedding path for the KD head (None: declared embedding)",
                                list),
    }

    def __init__(self, teacher: nn.Module | None, student: nn.Module, in_shape: Sequence[int], **params):
        super().__init__(teacher, student, in_shape, **params)
        self.student_layers = chosen_layers(student, params.get("student_layers"), "embedding")
        if len(self.student_layers) != 1:
            raise ConfigError(f"dho: student_layers must name one embedding layer, got {self.student_layers}")
        self.student_shapes = feature_shapes(student, self.student_layers, self.in_shape)
        dim = math.prod(self.student_shapes[self.student_layers[0]])
        self.kd_head = nn.Linear(dim, self.num_classes)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h_ce, h_kd)`` logits of the student's two heads."""
        ce_logits, feats = self.student_forward(x)
        return ce_logits, self.kd_head(feats[self.student_layers[0]].flatten(1))

    def forward_train(self, x: torch.Tensor, y: torch.Tensor,
                      teacher_out: TeacherOutput | None = None) -> tuple[torch.Tensor, dict]:
        if teacher_out is None:
            teacher_out = self.teacher_forward(x)
        ce_logits, kd_logits = self.heads(x)
        terms = {"ce": self.ce(ce_logits, y),
                 "kd": self.hp["kd_weight"] * kl_div(kd_logits, teacher_out.logits, self.hp["temperature"])}
        with torch.no_grad():
            mixed = dual_head_log_probs(ce_logits, kd_logits, self.hp["alpha"], self.hp["infer_temperature"])
        return mixed, terms

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the alpha-mixture of the two heads' probabilities (the deployed prediction)."""
        ce_logits, kd_logits = self.heads(x)
        return dual_head_log_probs(ce_logits, kd_logits, self.hp["alpha"], self.hp["infer_temperature"])
