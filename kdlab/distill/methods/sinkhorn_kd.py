"""Batch-wise Sinkhorn KD (Cui, Qin, Gao, Zhang, Xu, Wu, Li, Sun, Zhou & Li, "Sinkhorn Distance
Minimization for Knowledge Distillation", LREC-COLING 2024).

Instead of comparing teacher and student sample by sample, SinKD compares the *sets* of predicted
distributions of a batch with an entropy-regularised optimal-transport (Sinkhorn) distance.
Formulation, as in the authors' released code (``Sinkhorn.sinkhorn_loss``):

    p^S_i = softmax(z^S_i / T),  p^T_j = softmax(z^T_j / T)              (N rows each)
    W_ij  = ||p^S_i - p^T_j||_1                                          (N x N L1 ground cost)
    P^(0) = exp(-W / epsilon)                                            (Gibbs kernel)
    repeat n_iters times:  P <- P / rowsum(P);  P <- P / colsum(P)       (Sinkhorn normalisation)
    L_Sinkhorn = (1 / N) * sum_ij P_ij W_ij

The normalisations run in log space (``logsumexp``), which is the same arithmetic without underflow
for small epsilon. Gradients flow through both the plan ``P`` and the cost ``W`` (the plan is not
detached, as in the reference). Unlike the reference, which returns ``sum_ij P_ij W_ij`` (a plan
with unit row/column sums, so the value grows with the batch size) scaled by 0.002, we divide by N:
``P / N`` is then a transport plan between the two uniform empirical measures and the loss is the
average transport cost, in [0, 2] and independent of N. With identical predictions it tends to 0
as epsilon -> 0 (the plan concentrates on the diagonal); for epsilon > 0 it is a small positive
entropic bias. The reference trains it alongside the usual soft-target KL; kd_weight keeps that
term (Hinton's T^2-scaled KL here; 0 for Sinkhorn alone). Defaults follow the reference:
T = 2, epsilon = 0.1, 20 iterations.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.distill.base import CE_WEIGHT, Distiller, TeacherOutput, register_method
from kdlab.distill.functional import kl_div
from kdlab.registry import Param


def sinkhorn_plan(cost: torch.Tensor, epsilon: float = 0.1, n_iters: int = 20) -> torch.Tensor:
    """Alternate row / column normalisation of ``exp(-cost / epsilon)`` (log domain), ``n_iters`` times."""
    log_p = -cost / epsilon
    for _ in range(n_iters):
        log_p = log_p - torch.logsumexp(log_p, dim=1, keepdim=True)
        log_p = log_p - torch.logsumexp(log_p, dim=0, keepdim=True)
    return log_p.exp()


def sinkhorn_kd_loss(logits_s: torch.Tensor, logits_t: torch.Tensor, temperature: float = 2.0,
                     epsilon: float = 0.1, n_iters: int = 20) -> torch.Tensor:
    """Batch-wise Sinkhorn distance between student and teacher softmax rows (see the module docstring)."""
    p_s = F.softmax(logits_s / temperature, dim=1)
    p_t = F.softmax(logits_t.to(logits_s.dtype) / temperature, dim=1)
    cost = torch.cdist(p_s.unsqueeze(0), p_t.unsqueeze(0), p=1).squeeze(0)
    plan = sinkhorn_plan(cost, epsilon, n_iters)
    return (plan * cost).sum() / len(p_s)


@register_method("sinkhorn_kd")
class SinkhornKD(Distiller):
    """SinKD: ce + kd_weight * KL + sinkhorn_weight * batch-wise Sinkhorn distance of softmax outputs."""

    params = {
        "ce_weight": CE_WEIGHT,
        "kd_weight": Param(1.0, "weight of the per-sample soft-target KL (0: Sinkhorn term alone)",
                           float, 0.0, 100.0),
        "sinkhorn_weight": Param(1.0, "weight of the batch-wise Sinkhorn distance (mean transport cost)",
                                 float, 0.0, 1000.0),
        "temperature": Param(2.0, "softmax temperature T of both terms", float, 0.05, 100.0),
        "epsilon": Param(0.1, "entropic regularisation of the Sinkhorn plan (smaller: closer to exact OT)",
                         float, 1e-3, 10.0),
        "n_iters": Param(20, "number of Sinkhorn row/column normalisation rounds", int, 1, 1000),
    }

    def losses(self, logits: torch.Tensor, feats: dict, teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        t_logits = teacher.logits.to(logits.dtype)
        hp = self.hp
        sk = sinkhorn_kd_loss(logits, t_logits, hp["temperature"], hp["epsilon"], hp["n_iters"])
        kd = kl_div(logits, t_logits, hp["temperature"])
        return {"ce": self.ce(logits, y), "kd": hp["kd_weight"] * kd, "sinkhorn": hp["sinkhorn_weight"] * sk}
