"""Logit standardisation KD (Sun, Ren, Li, Wang & Cao, "Logit Standardization in Knowledge
Distillation", CVPR 2024).

Teacher and student need not share logit ranges, only logit *relations*. Each logit vector is
z-scored before the temperature softmax, ``Z(z) = (z - mean(z)) / std(z)``, so the effective
temperature becomes sample-adaptive (``T * std(z)``). The loss is Hinton KD on standardised logits:

    L = T^2 * KL(softmax(Z(z^T) / T) || softmax(Z(z^S) / T)),

with ``T`` the *base* temperature. As in the authors' code the standard deviation is the unbiased
(``C - 1``) one, with 1e-7 added to it; the paper's population std differs by the constant factor
``sqrt((C - 1) / C)``, i.e. a rescaled base temperature. Defaults follow the authors' CIFAR-100
KD + LS recipe: base temperature 2, ce_weight 0.1, kd_weight 9.
"""
from __future__ import annotations

import dataclasses

import torch

from kdlab.distill.base import CE_WEIGHT, Distiller, TeacherOutput, register_method
from kdlab.distill.functional import kl_div
from kdlab.registry import Param


def standardize_logits(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Row-wise z-score ``(z - mean) / (std + eps)``, unbiased std (as in the authors' code)."""
    mean = logits.mean(dim=1, keepdim=True)
    std = logits.std(dim=1, keepdim=True)
    return (logits - mean) / (std + eps)


def lskd_loss(logits_s: torch.Tensor, logits_t: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """``T^2 * KL(softmax(Z(z_t)/T) || softmax(Z(z_s)/T))``, batch mean, ``T`` the base temperature."""
    return kl_div(standardize_logits(logits_s), standardize_logits(logits_t), temperature)


@register_method("lskd")
class LSKD(Distiller):
    """Logit-standardised KD: ce + kd_weight * T^2 * KL of z-scored teacher and student logits."""

    params = {
        "ce_weight": dataclasses.replace(CE_WEIGHT, default=0.1),
        "kd_weight": Param(9.0, "weight of the KL between standardised logits", float, 0.0, 100.0),
        "temperature": Param(2.0, "base temperature T applied after z-scoring", float, 0.05, 100.0),
    }

    def losses(self, logits: torch.Tensor, feats: dict, teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        kd = lskd_loss(logits, teacher.logits.to(logits.dtype), self.hp["temperature"])
        return {"ce": self.ce(logits, y), "kd": self.hp["kd_weight"] * kd}
