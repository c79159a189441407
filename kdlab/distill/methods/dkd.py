"""Decoupled Knowledge Distillation (Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation",
CVPR 2022).

The Hinton KD loss splits exactly into a target-class part and a non-target part. With ``p`` the
temperature-softened distribution, ``b = [p_y, 1 - p_y]`` its binary target / non-target split and
``p_hat`` the distribution renormalised over the non-target classes,

    KL(p^T || p^S) = KL(b^T || b^S) + (1 - p^T_y) * KL(p_hat^T || p_hat^S)
                   =      TCKD      + (1 - p^T_y) *        NCKD.

DKD drops the coupling factor ``(1 - p^T_y)`` and weights the two parts freely:

    L_DKD = warm * T^2 * mean_i [ alpha * TCKD_i + beta * NCKD_i ],

as in the authors' code (mdistiller), including the ``T^2`` factor and the linear warm-up
``warm = min(progress / warmup, 1)``; the paper's CIFAR set-up warms up over 20 of 240 epochs.
Here NCKD is computed exactly on the non-target logits (the reference code subtracts 1000 from the
target logit instead) and TCKD in log space (``log(1 - p_y)`` via a log-sum-exp over non-targets).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.distill.base import CE_WEIGHT, Distiller, TeacherOutput, register_method
from kdlab.errors import ShapeError
from kdlab.registry import Param


def _binary_and_rest(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log b`` (N, 2) = [log p_y, log(1 - p_y)] and the non-target logits (N, C - 1)."""
    n, c = logits.shape
    mask = F.one_hot(target, c).bool()
    log_all = torch.logsumexp(logits, dim=1)
    rest = logits[~mask].view(n, c - 1)
    log_b = torch.stack([logits[mask] - log_all, torch.logsumexp(rest, dim=1) - log_all], dim=1)
    return log_b, rest


def dkd_terms(logits_s: torch.Tensor, logits_t: torch.Tensor, target: torch.Tensor,
              temperature: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``(T^2 * TCKD_i, T^2 * NCKD_i)``, each of shape (N,)."""
    if logits_s.shape[1] < 2:
        raise ShapeError(f"DKD needs at least two classes, got logits of shape {tuple(logits_s.shape)}")
    log_bs, rest_s = _binary_and_rest(logits_s / temperature, target)
    log_bt, rest_t = _binary_and_rest(logits_t / temperature, target)
    tckd = (log_bt.exp() * (log_bt - log_bs)).sum(dim=1)
    log_ps, log_pt = F.log_softmax(rest_s, dim=1), F.log_softmax(rest_t, dim=1)
    nckd = (log_pt.exp() * (log_pt - log_ps)).sum(dim=1)
    return tckd * temperature**2, nckd * temperature**2


def dkd_loss(logits_s: torch.Tensor, logits_t: torch.Tensor, target: torch.Tensor, alpha: float = 1.0,
             beta: float = 8.0, temperature: float = 4.0) -> torch.Tensor:
    """``T^2 * mean_i (alpha * TCKD_i + beta * NCKD_i)`` (see the module docstring)."""
    tckd, nckd = dkd_terms(logits_s, logits_t, target, temperature)
    return (alpha * tckd + beta * nckd).mean()


@register_method("dkd")
class DKD(Distiller):
    """Decoupled KD: ce + warm * (alpha * TCKD + beta * NCKD), target and non-target KL parts."""

    params = {
        "ce_weight": CE_WEIGHT,
        "alpha": Param(1.0, "weight of TCKD, the target-vs-rest binary KL (paper's alpha)",
                       float, 0.0, 100.0),
        "beta": Param(8.0, "weight of NCKD, the KL among non-target classes (paper's beta)",
                      float, 0.0, 100.0),
        "temperature": Param(4.0, "softmax temperature T of both distributions", float, 0.05, 100.0),
        "warmup": Param(20 / 240, "fraction of training over which the DKD terms ramp up linearly "
                        "(paper: 20 of 240 epochs; 0 disables)", float, 0.0, 1.0),
    }

    def warm(self) -> float:
        """The warm-up factor ``min(progress / warmup, 1)`` (1 when warm-up is disabled)."""
        w = self.hp["warmup"]
        return 1.0 if w <= 0 else min(self.progress / w, 1.0)

    def losses(self, logits: torch.Tensor, feats: dict, teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        tckd, nckd = dkd_terms(logits, teacher.logits.to(logits.dtype), y, self.hp["temperature"])
        warm = self.warm()
        return {"ce": self.ce(logits, y),
                "tckd": warm * self.hp["alpha"] * tckd.mean(),
                "nckd": warm * self.hp["beta"] * nckd.mean()}
