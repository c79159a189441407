"""CV-DD: dataset distillation via committee voting (Cui, Li, Ma, Bi, Luo & Shen, arXiv 2501.07575, 2025).

Key change over SRe2L: a committee of networks of different architectures recovers the images, each vote weighted
by the member's prior performance, ``w = softmax(100 * val_accuracy / T)``. As in the reference code (its IPC-10
setting), synthetic image ``j`` of every class is recovered by one subset of ``voters`` members (the subsets in
lexicographic order, cycling), with loss ``sum_i w_i (CE_i + r_bn * BN_i)`` where ``w`` is the softmax over that
subset; BN statistics are matched on the batch of one image per class. Soft labels are the vote-weighted average
of every member's softmax with batch-specific BatchNorm statistics (BSSL).

kdlab defaults: committee ConvNet (BatchNorm) + MLP + ResNet-8, 20 epochs each, 10% of each class held out for
the votes; T = 5, 2 voters, Adam lr 0.25 (betas 0.5, 0.9) cosine-decayed, r_bn 0.01, first BN layer x10 (the
reference's CIFAR-10 IPC-10 settings); real initialisation chosen by committee vote.

Departures: the members are small zoo models trained briefly on CPU (see ``kdlab.condense.committee``); the
reference starts from pre-made real patches ("medium" difficulty) or noise, kdlab starts from the real images a
class's committee vote is most confident about among ``init_candidates`` random ones per slot (``init: noise``:
Gaussian noise, the reference's other option); DSA augmentation replaces RandomResizedCrop + flip + jitter; soft
labels are one static distribution per image (the reference stores a label per epoch and crop) and average the
members' probabilities (the reference sums vote-weighted logits), with one vote temperature for both steps (the
reference uses 5 and 10); the whole set is the BSSL batch (it is the evaluation's batch too at small IPC).
"""
from __future__ import annotations

import itertools
from typing import Any

import torch

from kdlab.condense.committee import (
    Committee,
    build_members,
    check_models,
    class_batches,
    committee_params,
    cosine_lr,
    member_loss,
    pixel_bounds,
    pixel_optimizer,
    recover_params,
    soft_labels,
    train_committee,
    vote_weights,
)
from kdlab.condense.distill import Condensation
from kdlab.condense.methods import Condensed, register_condenser
from kdlab.errors import ConfigError
from kdlab.registry import Param

PARAMS = {
    **committee_params(),
    "vote_temperature": Param(5.0, "T of the vote weights softmax(100 * val accuracy / T)", float, 0.0, 1000.0,
                              low_open=True),
    "voters": Param(2, "committee members recovering each synthetic image (a subset per image index)", int, 1, 64),
    **recover_params(0.25),
    "init_candidates": Param(5, "random real candidates per synthetic image; the committee keeps its favourites",
                             int, 1, 1000),
    "batch_specific_labels": Param(True, "soft labels with the synthetic batch's BatchNorm statistics (BSSL)", bool),
}


def voter_subsets(n_members: int, voters: int, ipc: int) -> list[tuple[int, ...]]:
    """The members recovering synthetic image ``j`` of each class: the ``voters``-subsets of the committee in
    lexicographic order, image ``j`` taking subset ``j mod (number of subsets)`` (the reference's rule)."""
    subsets = list(itertools.combinations(range(n_members), voters))
    return [subsets[j % len(subsets)] for j in range(ipc)]


@torch.no_grad()
def voted_real(job: Condensation, committee: Committee, weights: torch.Tensor, candidates: int) -> torch.Tensor:
    """``ipc`` real images per class (class-major): of ``candidates * ipc`` random ones of the class (or all, when
    fewer), those the vote-weighted committee gives the highest probability of their class."""
    ipc, picked = job.cfg.ipc, []
    for c, m in enumerate(job.members):
        pool = m[torch.randperm(len(m), generator=job.g)[:candidates * ipc]]
        score = soft_labels(committee.members, weights, job.real[pool])[:, c]
        picked.append(pool[score.argsort(descending=True, stable=True)[:ipc]])
    return job.real[torch.cat(picked)].clone()


@register_condenser("cv_dd", params=PARAMS, learned=True, family="committee recovery")
def cv_dd(job: Condensation, params: dict[str, Any]) -> Condensed:
    """CV-DD (Cui et al. 2025): recover images with a performance-weighted committee vote; committee soft labels."""
    names = check_models(params["committee"], "condense.method_params.committee")
    if params["voters"] > len(names):
        raise ConfigError.at("condense.method_params.voters", f"{params['voters']} voters but the committee has "
                             f"{len(names)} members; valid: 1..{len(names)}")
    cfg, k, ipc = job.cfg, job.k, job.cfg.ipc
    committee = train_committee(job, names, build_members(job, names), params["committee_epochs"],
                                params["val_fraction"])
    temp = params["vote_temperature"]
    weights = vote_weights(committee.accuracy, temp)
    subsets = voter_subsets(len(names), params["voters"], ipc)
    # per member: the image indices it recovers and its vote within that index's subset
    roles: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i in range(len(names)):
        idx = [j for j, s in enumerate(subsets) if i in s]
        votes = [float(vote_weights([committee.accuracy[v] for v in subsets[j]], temp)[subsets[j].index(i)])
                 for j in idx]
        roles.append((torch.tensor(idx, dtype=torch.long), torch.tensor(votes)))

    if job.start is None:
        start, first = (voted_real(job, committee, weights, params["init_candidates"]) if cfg.init == "real"
                        else job.init_syn()), 1
    else:
        start, first = job.start_images()
    syn = start.clone().requires_grad_(True)
    opt = pixel_optimizer(syn, params["lr"])
    lo, hi = pixel_bounds(job)
    labels = torch.arange(k)

    def step(it: int) -> dict[str, float]:
        cosine_lr(opt, params["lr"], it, cfg.iterations)
        batches = class_batches(job.augment(syn), k).view(ipc, k, *syn.shape[1:])
        loss, ce_sum, bn_sum = syn.new_zeros(()), 0.0, 0.0
        for net, (idx, votes) in zip(committee.members, roles, strict=True):
            if len(idx) == 0:
                continue
            ce, bn = member_loss(net, batches[idx].flatten(0, 1), labels.repeat(len(idx)), len(idx),
                                 params["first_bn_multiplier"])
            loss = loss + (votes * (ce + params["r_bn"] * bn)).sum()
            ce_sum, bn_sum = ce_sum + float((votes * ce).sum().detach()), bn_sum + float((votes * bn).sum().detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            syn.copy_(torch.minimum(torch.maximum(syn, lo), hi))
        return {"loss": float(loss.detach()), "ce": ce_sum, "bn": bn_sum}

    x = job.learn(syn, first, step)
    soft = soft_labels(committee.members, weights, x, cfg.soft_temperature, params["batch_specific_labels"])
    meta = {**committee.describe(), "vote_weights": weights.tolist(), "voter_subsets": [list(s) for s in subsets],
            "labels": "committee vote (batch-specific)" if params["batch_specific_labels"] else "committee vote",
            "stored_images": len(x)}
    return Condensed(x, job.y_syn.clone(), soft, meta)
