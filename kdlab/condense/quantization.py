"""Dataset Quantization (DQ; Zhou, Wang, Gu, Peng, Lian, Zhang, You & Feng, ICCV 2023): a selection whose images
cover the data's whole spread, not only its densest part.

Key change: per class, the data is split into ``bins`` non-overlapping bins, each filled greedily by the
GraphCut submodular gain ``lam * sum_{i in U} s(i, e) - 2 * sum_{j in S} s(j, e)`` (``U`` the images not in an
earlier bin, ``S`` the bin so far, ``s`` the cosine similarity mapped to [0, 1] as in the official code):
the first bins take representative images, later bins the rarer ones. The coreset then samples every bin
uniformly (the same share of each). Optionally the least important patches of each selected image (by Grad-CAM
of the feature network) are dropped and not stored.

Defaults as in the paper / official code (magic-research/Dataset_Quantization): 10 bins, GraphCut ``lam = 1``,
naive greedy, balanced per class; patch drop ratio 0.2 when dropping is on. kdlab's departures:
- features: the embedding of a ConvNet trained ``reference_epochs`` on the data (``job.reference_net()``); the
  official code uses the last-layer gradient embedding of a trained ResNet-18 (``features: gradient`` gives that,
  with the proper cross-entropy gradient), or raw pixels (``features: pixel``);
- bins have equal sizes (the official code gives every bin ``round(N / bins)`` and the last the rest), and an
  IPC that the bins do not divide is shared by largest remainder with ties drawn at random (with IPC < bins
  some bins give nothing);
- patch dropping: Grad-CAM (not Grad-CAM++) at the deepest stage whose map is at least as fine as the patch
  grid, for the predicted class as in the official code. The paper rebuilds dropped patches with a pre-trained
  MAE when training; we have none, so dropped patches are filled with the class's mean image (``fill:
  class_mean``, K more images to store) or with the data mean (``fill: mean``, free: the set stores the mean
  anyway). ``meta["stored_images"]`` counts kept patches (and the class means) in images; the keep masks
  (one bit per patch) are not counted.
Patch dropping is off by default so that an IPC means whole images: on digits at IPC 10 (ConvNet, 2 seeds x 2
nets) dropping 20% with the class-mean fill kept accuracy (92.9% vs 92.9%) at 85% of the storage, with the
data-mean fill it lost 3.8 points.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.condense.distill import Condensation
from kdlab.condense.matching import embed
from kdlab.condense.methods import Condensed, register_condenser
from kdlab.data.splits import allocate
from kdlab.errors import ConfigError
from kdlab.models.taps import FeatureTaps, feature_shapes
from kdlab.registry import Param

FEATURES = ("convnet", "gradient", "pixel")
FILLS = ("class_mean", "mean")


def cosine_from_gram(gram: torch.Tensor) -> torch.Tensor:
    """Cosine similarity mapped to [0, 1] (``0.5 + 0.5 cos``, the official code's) from a Gram matrix, float64."""
    gram = gram.double()
    norms = gram.diagonal().clamp_min(1e-300).sqrt()
    return 0.5 + 0.5 * gram / (norms[:, None] * norms[None, :])


def similarity(features: torch.Tensor) -> torch.Tensor:
    """Pairwise similarity ``0.5 + 0.5 cos`` of the rows of ``features`` (flattened), float64."""
    f = features.double().flatten(1)
    return cosine_from_gram(f @ f.T)


def gradient_similarity(d: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Similarity of last-layer cross-entropy gradients ``[d, d outer h]`` (``d = p - y``, ``h`` the embedding),
    without forming them: their Gram matrix is ``(d d^T) * (1 + h h^T)``."""
    d, h = d.double(), h.double()
    return cosine_from_gram((d @ d.T) * (1 + h @ h.T))


def graphcut_gains(sim: torch.Tensor, selected: torch.Tensor, lam: float) -> torch.Tensor:
    """GraphCut gain of every image of a pool given the chosen ones (``sim``: the pool's similarities, ``selected``:
    positions in it): ``lam * sum_{i in pool} s(i, e) - 2 * sum_{j in selected} s(j, e)``."""
    return lam * sim.sum(0) - 2 * sim[selected].sum(0)


def quantize_bins(sim: torch.Tensor, bins: int, lam: float) -> list[torch.Tensor]:
    """Split the n images of the similarity matrix ``sim`` (n, n) into ``bins`` disjoint bins of (nearly) equal
    size by greedy GraphCut; each bin is chosen from the images no earlier bin took. Returns the positions of each
    bin, in the order chosen."""
    n = len(sim)
    if not 1 <= bins <= n:
        raise ConfigError(f"condense.method_params.bins: {bins} bins for {n} images; valid: 1..{n}")
    free = torch.ones(n, dtype=torch.bool)
    out = []
    for b in range(bins):
        pool = free.nonzero().flatten()
        sp = sim[pool][:, pool]
        chosen = torch.zeros(0, dtype=torch.long)
        for _ in range(n // bins + (b < n % bins)):
            gain = graphcut_gains(sp, chosen, lam)
            gain[chosen] = -math.inf
            chosen = torch.cat([chosen, gain.argmax().view(1)])
        free[pool[chosen]] = False
        out.append(pool[chosen])
    return out


def sample_bins(bins: list[torch.Tensor], k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` positions drawn uniformly without replacement from the bins, each bin giving its share of ``k``
    (largest remainder of ``k * size / total``; ties go to randomly ordered bins)."""
    order = torch.randperm(len(bins), generator=generator).numpy()
    sizes = np.array([len(b) for b in bins])
    counts = np.empty_like(sizes)
    counts[order] = allocate(sizes[order], k)
    return torch.cat([b[torch.randperm(len(b), generator=generator)[:c]] for b, c in zip(bins, counts, strict=True)])


def gradcam(net: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) of the predicted class, averaged onto the patch ``grid`` (N, gh, gw).

    Taken at the deepest stage whose map is at least as fine as the grid; for a network without such a map,
    the input-gradient saliency ``sum_c |d score / d x|`` stands in."""
    paths = list(getattr(net, "kdlab_taps", {}).get("stages", []))
    shapes = feature_shapes(net, paths, tuple(x.shape[1:])) if paths else {}
    fine = [p for p in paths if len(shapes[p]) == 3 and min(shapes[p][1:]) >= max(grid)]
    net.eval()
    x = x.detach().requires_grad_(True)
    if fine:
        with FeatureTaps(net, fine[-1:], clone=False) as taps:
            logits = net(x)
            a = taps.pop()[fine[-1]]
        score = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
        (g,) = torch.autograd.grad(score, a)
        cam = F.relu((g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
    else:
        logits = net(x)
        score = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
        cam = torch.autograd.grad(score, x)[0].abs().sum(1, keepdim=True)
    cam = F.interpolate(cam.detach(), size=x.shape[-2:], mode="bilinear", align_corners=False)
    return F.adaptive_avg_pool2d(cam, grid)[:, 0]


def drop_patches(x: torch.Tensor, importance: torch.Tensor, keep: float, patch: int,
                 fill: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the ``floor(P * keep)`` most important of the P ``patch`` x ``patch`` patches of every image and
    replace the others by ``fill`` (broadcastable to ``x``); returns the images and the keep mask (N, gh, gw)."""
    n, _, h, w = x.shape
    gh, gw = h // patch, w // patch
    p = gh * gw
    n_keep = math.floor(p * keep + 1e-9)
    top = importance.reshape(n, p).argsort(dim=1, descending=True, stable=True)[:, :n_keep]
    mask = torch.zeros(n, p, dtype=torch.bool).scatter_(1, top, True).view(n, gh, gw)
    pixels = mask.repeat_interleave(patch, 1).repeat_interleave(patch, 2)[:, None]
    return torch.where(pixels, x, fill.expand_as(x)), mask


def _similarities(job: Condensation, space: str, ref: nn.Module | None) -> list[torch.Tensor]:
    """Each class's similarity matrix in ``space``: pixels, the reference net's embedding or its last-layer
    cross-entropy gradient."""
    if space == "pixel":
        return [similarity(job.real[m]) for m in job.members]
    with torch.no_grad():
        h = torch.cat([embed(ref, b) for b in job.real.split(500)])
        if space == "convnet":
            return [similarity(h[m]) for m in job.members]
        d = torch.cat([F.softmax(ref(b), 1) for b in job.real.split(500)]) - F.one_hot(job.train.y, job.k)
    return [gradient_similarity(d[m], h[m]) for m in job.members]


@register_condenser("dq", params={
    "bins": Param(10, "number of non-overlapping bins per class (the paper's 10)", int, 1, 10_000),
    "lam": Param(1.0, "GraphCut weight of representativeness against diversity (the paper's 1)", float, 0.0, 100.0),
    "features": Param("convnet", "space of the similarity: convnet embedding, its last-layer gradient (the "
                      "official code's) or pixels", str, choices=FEATURES),
    "drop_ratio": Param(0.0, "fraction of each image's patches dropped by Grad-CAM importance (the paper: 0.2; "
                        "0 keeps whole images)", float, 0.0, 1.0, high_open=True),
    "patch": Param(2, "patch side in pixels (must divide the image side)", int, 1, 64),
    "fill": Param("class_mean", "what replaces dropped patches: the class mean image (stored, K images) or the "
                  "data mean (free)", str, choices=FILLS),
}, learned=False, family="selection")
def dq(job: Condensation, params: dict[str, Any]) -> Condensed:
    """Dataset Quantization (Zhou et al., ICCV 2023): GraphCut bins per class, uniform sampling from each."""
    bins, drop, patch = params["bins"], params["drop_ratio"], params["patch"]
    smallest = min(len(m) for m in job.members)
    if bins > smallest:
        raise ConfigError(f"condense.method_params.bins: {bins} bins but the smallest class has {smallest} images; "
                          f"valid: 1..{smallest}")
    h, w = job.train.in_shape[1:]
    if drop > 0 and (h % patch or w % patch):
        raise ConfigError(f"condense.method_params.patch: {patch} does not divide the {h}x{w} images; valid: a "
                          f"divisor of both sides")
    ref = job.reference_net() if params["features"] != "pixel" or drop > 0 else None
    sims = _similarities(job, params["features"], ref)
    idx = torch.cat([m[sample_bins(quantize_bins(sim, bins, params["lam"]), job.cfg.ipc, job.g)]
                     for m, sim in zip(job.members, sims, strict=True)])
    x, y = job.real[idx].clone(), job.y_syn.clone()
    n_img = len(x)
    meta: dict[str, Any] = {"bins": bins, "stored_images": float(n_img), "reference": ref}
    if drop > 0:
        grid = (h // patch, w // patch)
        if params["fill"] == "class_mean":
            fill = torch.stack([job.real[m].mean(0) for m in job.members])[y]
        else:
            fill = torch.zeros(1, *x.shape[1:])  # the data mean, in normalised space
        x, mask = drop_patches(x, gradcam(ref, x, grid), 1.0 - drop, patch, fill)
        kept = float(mask[0].float().mean())
        extra = job.k if params["fill"] == "class_mean" else 0
        meta.update(patches_kept=kept, stored_images=kept * n_img + extra)
    return Condensed(x, y, meta=meta)
