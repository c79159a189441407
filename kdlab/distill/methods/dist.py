"""DIST (Huang, You, Wang, Qian & Xu, "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022).

Instead of matching the teacher's probabilities exactly (KL), DIST asks the student to preserve their
*relations*, measured by the Pearson correlation ``rho``. With ``P = softmax(z / tau)`` row-wise,
(N, C) for student and teacher,

    inter = 1 - mean_i rho(P^S[i, :], P^T[i, :])   (inter-class: each sample's ranking of classes)
    intra = 1 - mean_c rho(P^S[:, c], P^T[:, c])   (intra-class: each class's ranking of samples)
    L_DIST = tau^2 * (beta * inter + gamma * intra),

with ``rho(a, b) = <a - mean a, b - mean b> / (||a - mean a|| * ||b - mean b|| + 1e-8)`` as in the
authors' code. The paper's defaults are beta = gamma = tau = 1 (its CIFAR-100 runs use tau = 4,
beta = gamma = 2).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.distill.base import CE_WEIGHT, Distiller, TeacherOutput, register_method
from kdlab.registry import Param


def pearson(a: torch.Tensor, b: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of ``a`` and ``b`` along ``dim`` (the other dimension is kept)."""
    a = a - a.mean(dim=dim, keepdim=True)
    b = b - b.mean(dim=dim, keepdim=True)
    return (a * b).sum(dim=dim) / (a.norm(dim=dim) * b.norm(dim=dim) + eps)


def dist_terms(logits_s: torch.Tensor, logits_t: torch.Tensor,
               tau: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tau^2 * inter, tau^2 * intra)``: one minus the mean Pearson correlation over rows / columns."""
    p_s = F.softmax(logits_s / tau, dim=1)
    p_t = F.softmax(logits_t / tau, dim=1)
    inter = 1.0 - pearson(p_s, p_t, dim=1).mean()
    intra = 1.0 - pearson(p_s, p_t, dim=0).mean()
    return tau**2 * inter, tau**2 * intra


def dist_loss(logits_s: torch.Tensor, logits_t: torch.Tensor, beta: float = 1.0, gamma: float = 1.0,
              tau: float = 1.0) -> torch.Tensor:
    """``tau^2 * (beta * inter + gamma * intra)`` (see the module docstring)."""
    inter, intra = dist_terms(logits_s, logits_t, tau)
    return beta * inter + gamma * intra


@register_method("dist")
class DIST(Distiller):
    """DIST: ce + beta * inter-class + gamma * intra-class Pearson-correlation relation losses."""

    params = {
        "ce_weight": CE_WEIGHT,
        "beta": Param(1.0, "weight of the inter-class relation loss (paper's beta)", float, 0.0, 100.0),
        "gamma": Param(1.0, "weight of the intra-class relation loss (paper's gamma)", float, 0.0, 100.0),
        "tau": Param(1.0, "softmax temperature tau of both distributions", float, 0.05, 100.0),
    }

    def losses(self, logits: torch.Tensor, feats: dict, teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        inter, intra = dist_terms(logits, teacher.logits.to(logits.dtype), self.hp["tau"])
        return {"ce": self.ce(logits, y), "inter": self.hp["beta"] * inter, "intra": self.hp["gamma"] * intra}
