"""Relational knowledge distillation (Park, Kim, Lu & Cho, "Relational Knowledge Distillation",
CVPR 2019), distance-wise and angle-wise losses on embeddings.

With ``e_i`` the embeddings of a batch (student and teacher separately; widths may differ),

    distance: psi_D(i, j) = ||e_i - e_j|| / mu,  mu = mean of the nonzero pairwise distances,
              L_D = mean_{i,j} huber(psi_D^S(i, j) - psi_D^T(i, j))             over all N^2 pairs;
    angle:    psi_A(i, j, k) = < (e_j - e_i)/||e_j - e_i||, (e_k - e_i)/||e_k - e_i|| >,
              L_A = mean_{i,j,k} huber(psi_A^S(i, j, k) - psi_A^T(i, j, k))    over all N^3 triples,

``huber`` the smooth-L1 loss with threshold 1 and degenerate triples (j = i or k = i, zero vector)
contributing psi = 0 on both sides, exactly as in the authors' code. Both relations are invariant
to rotating, translating and uniformly scaling either embedding. Embeddings are the models' declared
``embedding`` taps, conv maps / tokens globally average pooled. Paper weights: 25 (distance), 50 (angle).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.distill.base import CE_WEIGHT, LAYERS, Distiller, TeacherOutput, register_method
from kdlab.distill.functional import pool_flatten
from kdlab.registry import Param


def pairwise_distances(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(N, D) -> (N, N) Euclidean distances with an exactly-zero diagonal (gradient-safe at 0)."""
    sq = e.pow(2).sum(dim=1)
    d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e @ e.t()).clamp_min(eps)
    off = 1.0 - torch.eye(len(e), dtype=e.dtype, device=e.device)
    return d2.sqrt() * off


def rkd_distance_loss(emb_s: torch.Tensor, emb_t: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 between the mean-normalised pairwise distance matrices (0 for a batch of one)."""
    if len(emb_s) < 2:
        return emb_s.sum() * 0.0
    def normalised(e: torch.Tensor) -> torch.Tensor:
        d = pairwise_distances(e.flatten(1))
        return d / d[d > 0].mean()

    return F.smooth_l1_loss(normalised(emb_s), normalised(emb_t.to(emb_s.dtype)))


def angles(e: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, N, N): cosine of the angle at vertex ``i`` between ``e_j - e_i`` and ``e_k - e_i``."""
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)  # [i, j] = unit(e_j - e_i)
    return torch.bmm(diff, diff.transpose(1, 2))


def rkd_angle_loss(emb_s: torch.Tensor, emb_t: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 between the student's and the teacher's triplet angle cosines."""
    return F.smooth_l1_loss(angles(emb_s.flatten(1)), angles(emb_t.flatten(1).to(emb_s.dtype)))


def rkd_loss(emb_s: torch.Tensor, emb_t: torch.Tensor, distance_weight: float = 25.0,
             angle_weight: float = 50.0) -> torch.Tensor:
    """``distance_weight * L_D + angle_weight * L_A`` (see the module docstring)."""
    return distance_weight * rkd_distance_loss(emb_s, emb_t) + angle_weight * rkd_angle_loss(emb_s, emb_t)


@register_method("rkd")
class RKD(Distiller):
    """Relational KD: ce + distance-wise and angle-wise relation losses on the embeddings."""

    params = {
        "ce_weight": CE_WEIGHT,
        "distance_weight": Param(25.0, "weight of the distance-wise relation loss", float, 0.0, 1e4),
        "angle_weight": Param(50.0, "weight of the angle-wise relation loss", float, 0.0, 1e4),
        "teacher_layers": LAYERS,
        "student_layers": LAYERS,
    }
    feature_kind = "embedding"

    def losses(self, logits: torch.Tensor, feats: dict[str, torch.Tensor], teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        dist = ang = 0.0
        for s, t in self.layer_pairs(feats, teacher):
            e_s, e_t = pool_flatten(s), pool_flatten(t)
            dist = dist + rkd_distance_loss(e_s, e_t)
            ang = ang + rkd_angle_loss(e_s, e_t)
        return {"ce": self.ce(logits, y), "rkd_distance": self.hp["distance_weight"] * dist,
                "rkd_angle": self.hp["angle_weight"] * ang}
