"""Neuron selectivity transfer (Huang & Wang, "Like What You Like: Knowledge Distill via Neuron
Selectivity Transfer", arXiv 1707.01219, 2017).

Each channel of a conv feature is one sample of "neuron selectivity": its spatial activation
pattern ``f_c`` (H*W values), L2-normalised. NST matches the distribution of the student's channels
to the teacher's with the squared MMD under the degree-2 polynomial kernel ``k(a, b) = (a . b)^2``:

    MMD^2 = mean_{c,c'} k(t_c, t_c') + mean_{c,c'} k(s_c, s_c') - 2 mean_{c,c'} k(s_c, t_c'),

computed per sample and averaged over the batch, summed over layer pairs (the reference code's
"full" loss; the teacher-only term is a constant). Channel counts may differ; spatial sizes are
matched by area-interpolating the larger map down (adaptive average pooling, as in the reference
code). Default feat_weight = 50 (as in RepDistiller's NST runs). Needs spatial maps on both sides.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.distill.base import TeacherOutput, feature_params, register_method
from kdlab.distill.functional import match_spatial
from kdlab.distill.methods.spatial import SpatialDistiller
from kdlab.registry import Param


def poly_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, Ca, D), (N, Cb, D) -> (N, Ca, Cb) of ``(a_i . b_j)^2``."""
    return torch.bmm(a, b.transpose(1, 2)).pow(2)


def nst_loss(feat_s: torch.Tensor, feat_t: torch.Tensor) -> torch.Tensor:
    """Squared MMD (polynomial kernel, degree 2) between student and teacher channel distributions."""
    feat_s, feat_t = match_spatial(feat_s, feat_t.to(feat_s.dtype))
    s = F.normalize(feat_s.flatten(2), dim=2)
    t = F.normalize(feat_t.flatten(2), dim=2)
    return poly_kernel(t, t).mean() + poly_kernel(s, s).mean() - 2 * poly_kernel(s, t).mean()


@register_method("nst")
class NST(SpatialDistiller):
    """Neuron selectivity transfer: ce + feat_weight * polynomial-kernel MMD of channel activation maps."""

    params = feature_params(Param(50.0, "weight of the MMD loss (summed over layer pairs)", float, 0.0, 1e5))

    def losses(self, logits: torch.Tensor, feats: dict[str, torch.Tensor], teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        mmd = sum(nst_loss(s, t) for s, t in self.layer_pairs(feats, teacher))
        return {"ce": self.ce(logits, y), "nst": self.hp["feat_weight"] * mmd}
