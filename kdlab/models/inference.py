"""Inference of any classifier over a dataset: ``predict`` gives its logits in dataset order."""
from __future__ import annotations

import torch
from torch import nn

from kdlab.data.base import ArrayDataset, BatchLoader


@torch.no_grad()
def predict(model: nn.Module, data: ArrayDataset | BatchLoader, batch_size: int = 512,
            device: torch.device | str | None = None) -> torch.Tensor:
    """Logits of ``model`` for every sample, in dataset order, on the CPU."""
    loader = data if isinstance(data, BatchLoader) else BatchLoader(data, batch_size)
    device = device or next(model.parameters()).device
    was = model.training
    model.eval()
    out = [model(x.to(device, non_blocking=True)).float().cpu() for x, _y, _i in loader]
    model.train(was)
    return torch.cat(out) if out else torch.empty(0)
