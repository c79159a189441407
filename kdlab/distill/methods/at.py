"""Attention transfer (Zagoruyko & Komodakis, "Paying More Attention to Attention: Improving the
Performance of Convolutional Neural Networks via Attention Transfer", ICLR 2017).

The activation-based spatial attention map of a conv feature ``F`` (N, C, H, W) is
``Q = mean_c |F_c|^p`` (p = 2 in the paper), flattened to (N, H*W) and L2-normalised per sample.
The loss, summed over layer pairs, is

    L_AT = sum_pairs mean_{i, k} (Q^S_i / ||Q^S_i|| - Q^T_i / ||Q^T_i||)_k^2,

i.e. the reference code's ``(at(x) - at(y)).pow(2).mean()``. Maps of different spatial size are
matched by area-interpolating the larger feature down to the smaller (adaptive average pooling, as
in mdistiller); channel counts may differ since the map averages over channels. The normalisation
makes the loss invariant to rescaling either feature. Default feat_weight = 1000 as in mdistiller;
the paper's objective writes beta/2 with beta = 1000, i.e. feat_weight = 500.

AT needs spatial feature maps on both sides; a non-convolutional model (MLP, ViT tokens) raises a
ConfigError pointing to the methods that work across architectures.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.distill.base import TeacherOutput, feature_params, register_method
from kdlab.distill.functional import match_spatial
from kdlab.distill.methods.spatial import SpatialDistiller
from kdlab.registry import Param


def attention_map(feat: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """(N, C, H, W) -> (N, H*W): ``mean_c |F_c|^p``, L2-normalised per sample."""
    q = feat.abs().pow(p).mean(dim=1).flatten(1)
    return F.normalize(q, dim=1)


def at_loss(feat_s: torch.Tensor, feat_t: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """``mean (Q_s/||Q_s|| - Q_t/||Q_t||)^2`` of one layer pair (spatial sizes matched by area resize)."""
    feat_s, feat_t = match_spatial(feat_s, feat_t.to(feat_s.dtype))
    return (attention_map(feat_s, p) - attention_map(feat_t, p)).pow(2).mean()


@register_method("at")
class AT(SpatialDistiller):
    """Attention transfer: ce + feat_weight * sum of L2 distances of normalised spatial attention maps."""

    params = feature_params(
        Param(1000.0, "weight of the attention loss (paper: beta/2, beta = 1000)", float, 0.0, 1e6),
        p=Param(2.0, "exponent p of the attention map mean_c |F_c|^p", float, 1.0, 8.0))

    def losses(self, logits: torch.Tensor, feats: dict[str, torch.Tensor], teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        att = sum(at_loss(s, t, self.hp["p"]) for s, t in self.layer_pairs(feats, teacher))
        return {"ce": self.ce(logits, y), "at": self.hp["feat_weight"] * att}
