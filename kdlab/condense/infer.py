"""INFER: inter-class feature compensators (Zhang, Du, Liu & Zhou, "Breaking Class Barriers: Efficient Dataset
Distillation via Inter-Class Feature Compensator", ICLR 2025).

Key change: "one instance for all classes". A Universal Feature Compensator (UFC) ``delta`` is one image-sized
perturbation shared by every class: for one real base image ``x_k`` of each class ``k``, ``delta`` is optimised so
that every ``x_k + delta`` is classified as ``k`` by a trained network (cross entropy plus SRe2L's BatchNorm-
statistics loss on that batch of one image per class). The network trains on the base images and on every
``x_k + delta``; a user stores only the base images and the compensators.

Budget (the reference's rule, counted honestly): with K classes and M committee members, ``b = floor(ipc K /
(K + M))`` base images per class and one compensator per base set and member, ``m = M b``, so the stored images
``b K + m <= ipc K``; the network trains on ``b K (1 + M)`` samples. The smallest valid IPC is ``ceil((K + M) / K)``.

kdlab defaults: committee ConvNet (BatchNorm) + MLP + ResNet-8 trained 20 epochs (compensator ``(j, i)`` is
optimised with member ``i`` on base set ``j``, as in the reference); Adam lr 0.25 (betas 0.5, 0.9) cosine-decayed,
r_bn 0.01, first BN layer x10; random real base images (``init: noise``: noise); static soft labels: the members'
average softmax on every sample (the reference averages logits, then trains with a KL loss at temperature 30 and
mixup).

Departures: small zoo members trained briefly on CPU; DSA augmentation replaces the reference's random roll
(jitter); samples are not clipped to the pixel range (the reference's clip does not reach its compensator either).
The set's ``x`` holds every training sample; ``extras`` hold what is stored (``base``: pixel images,
``compensators``: pixel-space offsets, and which base set and member made each). Snapshots (the run viewer's,
and resumes) hold the stored layout: class ``k``'s row starts with its ``b`` base images, the remaining slots carry
the compensators in order (then zeros), so a resumed run continues from its compensators.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from kdlab.condense.committee import (
    build_members,
    check_models,
    class_batches,
    committee_params,
    cosine_lr,
    member_loss,
    pixel_optimizer,
    recover_params,
    soft_labels,
    train_committee,
)
from kdlab.condense.distill import Condensation
from kdlab.condense.methods import Condensed, register_condenser
from kdlab.errors import ConfigError

PARAMS = {**committee_params(), **recover_params(0.25)}


def budget(ipc: int, k: int, m_members: int) -> tuple[int, int]:
    """Base images per class and compensators: ``b = floor(ipc K / (K + M))`` and ``M b`` (stored: ``b K + M b``,
    at most ``ipc K``). A ConfigError naming ``condense.ipc`` when ``b`` would be 0."""
    b = ipc * k // (k + m_members)
    if b < 1:
        smallest = math.ceil((k + m_members) / k)
        raise ConfigError.at("condense.ipc", f"INFER with {k} classes and {m_members} committee members needs at "
                             f"least one base image per class and one compensator (b*K + M*b <= ipc*K): ipc >= "
                             f"{smallest}, got {ipc}")
    return b, m_members * b


def layout(k: int, ipc: int, b: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions in the class-major (K * ipc) stored layout: the base images (K * b, class-major) and the ``m``
    compensator slots (the slots after each class's bases, in order)."""
    pos = torch.arange(k * ipc).view(k, ipc)
    return pos[:, :b].flatten(), pos[:, b:].flatten()[:m]


@register_condenser("infer", params=PARAMS, learned=True, family="committee recovery")
def infer(job: Condensation, params: dict[str, Any]) -> Condensed:
    """INFER (Zhang et al., ICLR 2025): real base images plus compensators shared across classes."""
    names = check_models(params["committee"], "condense.method_params.committee")
    cfg, k, ipc, n_m = job.cfg, job.k, job.cfg.ipc, len(names)
    b, m = budget(ipc, k, n_m)
    committee = train_committee(job, names, build_members(job, names), params["committee_epochs"],
                                params["val_fraction"])
    base_pos, slots = layout(k, ipc, b, m)
    start, first = job.start_images()
    store = torch.zeros_like(start)
    store[base_pos] = start[base_pos]
    if job.start is not None:  # a snapshot carries its compensators
        store[slots] = start[slots]
    bases = store[base_pos].view(k, b, *store.shape[1:])
    delta = store[slots].clone().requires_grad_(True)
    opt = pixel_optimizer(delta, params["lr"])
    labels = torch.arange(k).repeat(b)
    batch_bases = class_batches(bases.flatten(0, 1), k).view(b, k, *store.shape[1:])

    def step(it: int) -> dict[str, float]:
        cosine_lr(opt, params["lr"], it, cfg.iterations)
        loss, ce_sum, bn_sum = delta.new_zeros(()), 0.0, 0.0
        for i, net in enumerate(committee.members):
            x = (batch_bases + delta.view(b, n_m, *delta.shape[1:])[:, i, None]).flatten(0, 1)
            ce, bn = member_loss(net, job.augment(x), labels, b, params["first_bn_multiplier"])
            loss = loss + (ce + params["r_bn"] * bn).sum()
            ce_sum, bn_sum = ce_sum + float(ce.sum().detach()), bn_sum + float(bn.sum().detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            store[slots] = delta
        return {"loss": float(loss.detach()), "ce": ce_sum, "bn": bn_sum}

    job.learn(store, first, step)
    delta = delta.detach()
    base_of, member_of = torch.arange(m) // n_m, torch.arange(m) % n_m
    x = torch.cat([bases, bases[:, base_of] + delta[None]], 1).flatten(0, 1)
    y = torch.arange(k).repeat_interleave(b + m)
    soft = soft_labels(committee.members, [1.0] * n_m, x, cfg.soft_temperature)
    meta = {**committee.describe(), "base_per_class": b, "compensators": m, "stored_images": b * k + m,
            "budget_images": ipc * k, "training_samples": len(x), "labels": "committee average (static)"}
    extras = {"base": (bases.flatten(0, 1) * job.s + job.m).numpy(), "compensators": (delta * job.s).numpy(),
              "compensator_base": base_of.numpy(), "compensator_member": member_of.numpy()}
    return Condensed(x, y, soft, meta, extras)
