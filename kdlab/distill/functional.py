"""Loss building blocks shared by the distillation methods (pure tensor functions)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_div(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
           reduction: str = "batchmean") -> torch.Tensor:
    """KL(p_teacher || p_student) of temperature-softened distributions, scaled by T^2 (Hinton et al.)."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction=reduction, log_target=True)
    return kl * temperature**2


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a soft target distribution, averaged over the batch."""
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def pool_flatten(feat: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C) by global average pooling; (N, L, D) tokens -> (N, D); (N, D) unchanged."""
    if feat.ndim == 4:
        return feat.mean(dim=(2, 3))
    if feat.ndim == 3:
        return feat.mean(dim=1)
    return feat.flatten(1)


def match_spatial(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring two (N, C, H, W) maps to the same H x W: the larger is area-interpolated down to the smaller.

    Area interpolation is adaptive average pooling (what the AT/NST reference code uses); when neither
    map is at least as large as the other in both dimensions, both go to the smaller H and smaller W.
    """
    if a.shape[-2:] == b.shape[-2:]:
        return a, b
    size = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
    if tuple(a.shape[-2:]) != size:
        a = F.interpolate(a, size=size, mode="area")
    if tuple(b.shape[-2:]) != size:
        b = F.interpolate(b, size=size, mode="area")
    return a, b
