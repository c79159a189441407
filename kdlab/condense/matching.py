"""The matching losses of dataset distillation, per class, on a randomly initialised (or trained) network.

- ``dm_loss``: distribution matching (Zhao & Bilen 2023), squared distance of per-class mean embeddings.
- ``dam_loss``: attention matching (DataDAM, Sajedi et al. 2023), per-layer spatial attention maps
  ``sum_c |f_c|^p`` (L2-normalised) matched by their class means, plus the DM term on the last layer.
- ``gradient_distance``: DC's layer-wise distance (Zhao et al. 2021), sum over output units of
  ``1 - cos(g_real, g_syn)``; 1-d parameters (biases, norm scales) are ignored, as in the reference.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.errors import ConfigError
from kdlab.models.taps import FeatureTaps


def stage_paths(net: nn.Module) -> list[str]:
    """The paths of the network's stages (``kdlab_taps['stages']``), used for attention maps."""
    stages = list(getattr(net, "kdlab_taps", {}).get("stages", []))
    if not stages:
        raise ConfigError(f"model {type(net).__name__} declares no kdlab_taps['stages']; DataDAM needs them")
    return stages


def channels_last_copy(net: nn.Module) -> nn.Module:
    """A channels-last copy of a network for the no-grad forward of the real batch (``per_class_means``): there
    oneDNN's CPU convolutions and pooling run ~1.3x faster; the synthetic side's backward does not, so the
    network it uses stays contiguous (bench_condense measures both)."""
    return copy.deepcopy(net).to(memory_format=torch.channels_last)


def embed(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The network's flattened embedding (``net.embed`` or its ``kdlab_taps['embedding']`` output)."""
    if hasattr(net, "embed"):
        return net.embed(x)
    path = getattr(net, "kdlab_taps", {}).get("embedding")
    if not path:
        raise ConfigError(f"model {type(net).__name__} has no embed() and no kdlab_taps['embedding']")
    with FeatureTaps(net, [path], clone=False) as taps:
        net(x)
        return taps.pop()[path].flatten(1)


def class_means(f: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Means of ``f`` (n_classes * m, ...) over equal consecutive per-class blocks -> (n_classes, ...)."""
    return f.reshape(n_classes, -1, *f.shape[1:]).mean(1)


def per_class_means(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, n_classes: int) -> Any:
    """Class means of ``fn``'s outputs (a tensor or a nested list/tuple of them), computed one class block of ``x``
    at a time (their activations stay in cache), channels-last when 4-d (see ``channels_last_copy``)."""
    outs = [fn(b.contiguous(memory_format=torch.channels_last) if b.ndim == 4 else b) for b in x.chunk(n_classes)]

    def stack(parts: list[Any]) -> Any:
        if isinstance(parts[0], torch.Tensor):
            return torch.stack([p.mean(0) for p in parts])
        return type(parts[0])(stack(list(group)) for group in zip(*parts, strict=True))

    return stack(outs)


def dm_loss(real_means: torch.Tensor, syn_emb: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Sum over classes of ``||mean real embedding - mean synthetic embedding||^2`` (the reference DM loss)."""
    return ((real_means - class_means(syn_emb, n_classes)) ** 2).sum()


def attention(f: torch.Tensor, p: float) -> torch.Tensor:
    """Spatial attention of a feature map (N, C, H, W): ``sum_c |f|^p``, flattened and L2-normalised."""
    a = f.abs().pow(p).sum(1) if f.ndim == 4 else f.abs().pow(p)
    return F.normalize(a.flatten(1), dim=1)


def stages_and_embedding(net: nn.Module, x: torch.Tensor, paths: Sequence[str]) -> tuple[list[torch.Tensor],
                                                                                       torch.Tensor]:
    """Outputs of ``paths`` and the embedding in one forward pass."""
    with FeatureTaps(net, paths, clone=True) as taps:
        emb = embed(net, x)
        feats = taps.pop()
    return [feats[p] for p in paths], emb


def dam_loss(real: tuple[list[torch.Tensor], torch.Tensor], syn: tuple[list[torch.Tensor], torch.Tensor],
             n_classes: int, attention_weight: float) -> torch.Tensor:
    """DataDAM: ``attention_weight * sum_layers ||mean A_real - mean A_syn||^2 + DM term`` per class.

    ``real`` holds class means already (attention maps per layer, embedding); ``syn`` holds per-sample ones.
    """
    real_att, real_emb = real
    syn_att, syn_emb = syn
    att = sum(((r - class_means(s, n_classes)) ** 2).sum() for r, s in zip(real_att, syn_att, strict=True))
    return attention_weight * att + dm_loss(real_emb, syn_emb, n_classes)


def gradient_distance(g_real: Sequence[torch.Tensor], g_syn: Sequence[torch.Tensor]) -> torch.Tensor:
    """DC's layer-wise distance: per parameter tensor, ``sum_out (1 - cos)`` of the reshaped gradients."""
    total = g_syn[0].new_zeros(())
    for gr, gs in zip(g_real, g_syn, strict=True):
        if gs.ndim == 1:
            continue  # biases and norm scales: ignored, as in the reference code
        gr, gs = gr.reshape(gr.shape[0], -1), gs.reshape(gs.shape[0], -1)
        cos = (gr * gs).sum(-1) / (gr.norm(dim=-1) * gs.norm(dim=-1) + 1e-6)
        total = total + (1 - cos).sum()
    return total
