"""Selection baselines and initialisation: random real images per class, herding (Welling 2009)."""
from __future__ import annotations

from collections.abc import Callable

import torch

from kdlab.data.base import ArrayDataset
from kdlab.errors import ConfigError


def class_indices(y: torch.Tensor, n_classes: int) -> list[torch.Tensor]:
    """Positions of each class's samples."""
    return [(y == k).nonzero().flatten() for k in range(n_classes)]


def check_ipc(data: ArrayDataset, ipc: int) -> list[torch.Tensor]:
    """The per-class positions of ``data``, after checking every class has ``ipc`` images."""
    if isinstance(ipc, bool) or not isinstance(ipc, int) or ipc < 1:
        raise ConfigError(f"ipc: expected a whole number >= 1 (images per class), got {ipc!r}")
    members = class_indices(data.y, data.num_classes)
    short = {data.classes[k]: len(m) for k, m in enumerate(members) if len(m) < ipc}
    if short:
        raise ConfigError(f"ipc: {ipc} images per class, but these classes have fewer: {short}")
    return members


def random_real(data: ArrayDataset, ipc: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``ipc`` random real images of each class (class-major order)."""
    members = check_ipc(data, ipc)
    return torch.cat([m[torch.randperm(len(m), generator=generator)[:ipc]] for m in members])


def herding_select(features: torch.Tensor, k: int) -> torch.Tensor:
    """Greedy herding: the ``k`` rows whose running mean best tracks the mean of all rows (float64).

    Step ``t`` picks the unused row minimising ``||mu - (sum of chosen + f) / t||``.
    """
    f = features.double().flatten(1)
    mu = f.mean(0)
    chosen: list[int] = []
    total = torch.zeros_like(mu)
    free = torch.ones(len(f), dtype=torch.bool)
    for t in range(1, k + 1):
        dist = ((mu - (total + f) / t) ** 2).sum(1)
        dist[~free] = float("inf")
        i = int(dist.argmin())
        chosen.append(i)
        free[i] = False
        total += f[i]
    return torch.tensor(chosen, dtype=torch.long)


@torch.no_grad()
def herding(data: ArrayDataset, ipc: int, embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
            batch_size: int = 500) -> torch.Tensor:
    """Indices of ``ipc`` images per class chosen by herding on ``embed(x)`` features (pixels if None)."""
    members = check_ipc(data, ipc)
    out = []
    for m in members:
        x = data.x[m]
        f = torch.cat([embed(x[b:b + batch_size]) for b in range(0, len(x), batch_size)]) if embed else x
        out.append(m[herding_select(f, ipc)])
    return torch.cat(out)
