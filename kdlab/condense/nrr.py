"""NRR-DD: non-critical region refinement (Tran, Le, Le, Do & Phung, "Enhancing Dataset Distillation via
Non-Critical Region Refinement", CVPR 2025).

Key change: start from real images and keep what makes each one itself. A trained teacher's class activation
map (Grad-CAM of the true class) marks each image's critical region; those pixels stay exactly as they are, and
only the non-critical region is refined with the teacher's knowledge (SRe2L's recover loss: cross entropy plus
BatchNorm-statistics matching), so the images gain class-general features without losing instance detail. Soft
labels come from the teacher.

kdlab defaults: teacher a ConvNet with BatchNorm trained 20 epochs on the real data (less a 10% held-out share
that scores it); the critical region is the ``critical_fraction`` = 0.5 of pixels with the highest Grad-CAM
(taken at the deepest stage whose map is larger than 1x1, upsampled bilinearly); Adam lr 0.25 (betas 0.5, 0.9)
cosine-decayed, r_bn 0.01, first BN layer x10, one image per class per BN batch; static teacher soft labels.

Departures: the teacher is a small zoo model trained briefly on CPU; the critical region is a fixed share of
pixels (kdlab's choice; the official code was not available here); DSA augmentation during refinement; the
paper's Distance-Based Representative (DBR) soft-label storage is left out: kdlab stores one static soft label
per image (K numbers), already far smaller than per-crop labels. A resumed run recomputes the critical region on
its snapshot's images.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.condense.committee import (
    build_members,
    check_models,
    class_batches,
    cosine_lr,
    member_loss,
    pixel_bounds,
    pixel_optimizer,
    recover_params,
    soft_labels,
    train_committee,
)
from kdlab.condense.distill import Condensation
from kdlab.condense.methods import Condensed, register_condenser
from kdlab.errors import ConfigError
from kdlab.models.taps import FeatureTaps, feature_shapes
from kdlab.registry import Param

PARAMS = {
    "teacher": Param("convnet", "zoo model (with conv stages) trained on the real data: CAM, losses, soft labels",
                     str),
    "teacher_epochs": Param(20, "epochs the teacher trains on the real data", int, 1, 10_000),
    "val_fraction": Param(0.1, "share of each class held out to score the teacher", float, 0.0, 0.5, low_open=True),
    "critical_fraction": Param(0.5, "share of each image's pixels (highest Grad-CAM) kept exactly", float, 0.0, 1.0),
    **recover_params(0.25),
}


def cam_stage(net: nn.Module, in_shape: tuple[int, ...]) -> str:
    """The deepest declared stage whose output is a feature map larger than 1x1 (where Grad-CAM can point)."""
    stages = list(getattr(net, "kdlab_taps", {}).get("stages", []))
    shapes = feature_shapes(net, stages, in_shape) if stages else {}
    spatial = [p for p in stages if len(shapes[p]) == 3 and shapes[p][1] * shapes[p][2] > 1]
    if not spatial:
        raise ConfigError.at("condense.method_params.teacher", f"{type(net).__name__} has no convolutional stage "
                             "with a feature map larger than 1x1 for Grad-CAM; use e.g. 'convnet' or 'resnet8'")
    return spatial[-1]


def grad_cam(net: nn.Module, x: torch.Tensor, y: torch.Tensor, path: str) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) of class ``y`` at module ``path``, upsampled to the images: (N, H, W),
    ``relu(sum_c mean_hw(d logit_y / dA_c) * A_c)``."""
    x = x.detach().clone().requires_grad_(True)  # a graph through the frozen net
    with FeatureTaps(net, [path], clone=False) as taps:
        score = net(x).gather(1, y.view(-1, 1)).sum()
        feat = taps.pop()[path]
    grad, = torch.autograd.grad(score, feat)
    cam = F.relu((grad.mean((2, 3), keepdim=True) * feat).sum(1, keepdim=True)).detach()
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def critical_mask(cam: torch.Tensor, fraction: float) -> torch.Tensor:
    """Per image, the ``round(fraction * H * W)`` positions of highest ``cam`` (ties: the earlier position),
    as a boolean (N, 1, H, W) mask."""
    n, h, w = cam.shape
    keep = round(fraction * h * w)
    order = cam.flatten(1).argsort(dim=1, descending=True, stable=True)[:, :keep]
    mask = torch.zeros(n, h * w, dtype=torch.bool)
    mask.scatter_(1, order, True)
    return mask.view(n, 1, h, w)


@register_condenser("nrr_dd", params=PARAMS, learned=True, family="committee recovery")
def nrr_dd(job: Condensation, params: dict[str, Any]) -> Condensed:
    """NRR-DD (Tran et al., CVPR 2025): real images whose non-critical region (by Grad-CAM) is refined."""
    name, = check_models([params["teacher"]], "condense.method_params.teacher")
    if job.cfg.init != "real":
        raise ConfigError.at("condense.init", f"nrr_dd refines real images (their critical regions are kept); "
                             f"got {job.cfg.init!r}, valid: ['real']")
    members = build_members(job, [name])
    path = cam_stage(members[0], job.train.in_shape)
    teacher_set = train_committee(job, [name], members, params["teacher_epochs"], params["val_fraction"])
    teacher = teacher_set.members[0]
    cfg, k = job.cfg, job.k
    start, first = job.start_images()
    mask = critical_mask(grad_cam(teacher, start, job.y_syn, path), params["critical_fraction"])
    fixed = start.clone()
    free = start.clone().requires_grad_(True)
    syn = start.clone()
    opt = pixel_optimizer(free, params["lr"])
    lo, hi = pixel_bounds(job)
    labels = torch.arange(k).repeat(cfg.ipc)

    def step(it: int) -> dict[str, float]:
        cosine_lr(opt, params["lr"], it, cfg.iterations)
        x = class_batches(job.augment(torch.where(mask, fixed, free)), k)
        ce, bn = member_loss(teacher, x, labels, cfg.ipc, params["first_bn_multiplier"])
        loss = (ce + params["r_bn"] * bn).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            free.copy_(torch.minimum(torch.maximum(free, lo), hi))
            syn.copy_(torch.where(mask, fixed, free))
        return {"loss": float(loss.detach()), "ce": float(ce.sum().detach()), "bn": float(bn.sum().detach())}

    x = job.learn(syn, first, step)
    soft = soft_labels([teacher], [1.0], x, cfg.soft_temperature)
    meta = {"teacher": name, "teacher_val_accuracy": teacher_set.accuracy[0], "cam_stage": path,
            "critical_fraction": params["critical_fraction"], "critical_pixels": int(mask[0].sum()),
            "labels": "teacher (static)", "dbr": "left out", "stored_images": len(x)}
    return Condensed(x, job.y_syn.clone(), soft, meta, {"critical_mask": mask.numpy()})
