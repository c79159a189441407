"""Nearest real neighbours of synthetic images, in pixel space or in a network's feature space (float64)."""
from __future__ import annotations

from collections.abc import Callable

import torch

from kdlab.errors import ConfigError

SPACES = ("pixel", "feature")


@torch.no_grad()
def nearest_real(synthetic: torch.Tensor, real: torch.Tensor, k: int = 3,
                 embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (S, k) of the ``k`` real images closest to each synthetic one (Euclidean, float64), and the
    distances. With ``embed`` the distance is between ``embed(x)`` features, else between pixels."""
    if not 1 <= k <= len(real):
        raise ConfigError(f"k: expected 1..{len(real)} (the number of real images), got {k!r}")
    if synthetic.shape[1:] != real.shape[1:]:
        raise ConfigError(f"synthetic images {tuple(synthetic.shape[1:])} and real images "
                          f"{tuple(real.shape[1:])} differ in shape")

    def feats(x: torch.Tensor) -> torch.Tensor:
        if embed is None:
            return x.flatten(1).double()
        return torch.cat([embed(x[b:b + batch_size]).flatten(1) for b in range(0, len(x), batch_size)]).double()

    d = torch.cdist(feats(synthetic), feats(real), compute_mode="donot_use_mm_for_euclid_dist")
    dist, idx = d.topk(k, dim=1, largest=False)
    return idx, dist
