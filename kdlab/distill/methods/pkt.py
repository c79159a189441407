"""Probabilistic knowledge transfer (Passalis & Tefas, "Learning Deep Representations with
Probabilistic Knowledge Transfer", ECCV 2018).

Each model's embeddings define, for every sample ``i``, a conditional distribution over the other
samples of the batch from a cosine-similarity kernel: with ``c_ij`` the cosine similarity of
embeddings ``i`` and ``j``, ``K_ij = (c_ij + 1) / 2`` in [0, 1] and ``p_{j|i} = K_ij / sum_j K_ij``.
The student matches the teacher's conditional densities under the KL divergence:

    L_PKT = mean_{i,j} p^T_{j|i} * log((p^T_{j|i} + eps) / (p^S_{j|i} + eps)),   eps = 1e-7,

the mean over all N^2 entries (the sum over ``j`` divided by N, as in the authors' code; the
diagonal ``j = i`` is kept). It is zero when the two similarity structures agree and does not need
matching embedding widths. Embeddings are the models' declared ``embedding`` taps, conv maps /
tokens globally average pooled. Default feat_weight = 30000 as in RepDistiller's PKT runs.
"""
from __future__ import annotations

import torch

from kdlab.distill.base import Distiller, TeacherOutput, feature_params, register_method
from kdlab.distill.functional import pool_flatten
from kdlab.registry import Param


def cosine_densities(e: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """(N, D) -> (N, N) row-stochastic ``p_{j|i}`` from the kernel ``(cos(e_i, e_j) + 1) / 2``."""
    e = e / (e.norm(dim=1, keepdim=True) + eps)
    k = (e @ e.t() + 1.0) / 2.0
    return k / k.sum(dim=1, keepdim=True)


def pkt_loss(emb_s: torch.Tensor, emb_t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """KL between teacher and student cosine-kernel conditional densities, mean over all (i, j)."""
    p_s = cosine_densities(emb_s.flatten(1), eps)
    p_t = cosine_densities(emb_t.flatten(1).to(emb_s.dtype), eps)
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()


@register_method("pkt")
class PKT(Distiller):
    """Probabilistic KT: ce + feat_weight * KL of cosine-kernel sample densities of the embeddings."""

    params = feature_params(Param(30000.0, "weight of the PKT divergence (mean over sample pairs)",
                                  float, 0.0, 1e6))
    feature_kind = "embedding"

    def losses(self, logits: torch.Tensor, feats: dict[str, torch.Tensor], teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        pkt = sum(pkt_loss(pool_flatten(s), pool_flatten(t)) for s, t in self.layer_pairs(feats, teacher))
        return {"ce": self.ce(logits, y), "pkt": self.hp["feat_weight"] * pkt}
