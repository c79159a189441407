"""The source-selection experiment in one place: a target task with a label budget, and every method of the
comparison trained the same way (same student, steps, optimiser and seed) so their accuracies compare.

Methods: ``scratch`` (student on the labelled images), ``finetune`` (the best source, all weights trained,
new head), ``fixmatch``, ``uniform`` (all sources, equal weights), ``nearest`` (DistillNearest from the best
source by ``metric``), ``weighted`` (DistillWeighted with ``source_weights(scores[metric], temperature)``)
and ``single:<source>`` (DistillNearest from that source, to measure each source's realised value).
"""
from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from kdlab.data.api import load
from kdlab.data.base import ArrayDataset
from kdlab.data.splits import stratified_subset
from kdlab.distill.base import create_distiller
from kdlab.distill.trainer import TrainConfig, Trainer
from kdlab.errors import ConfigError
from kdlab.models import create
from kdlab.transfer.selection import SourceFeatures, best_source, source_features, source_weights
from kdlab.transfer.teachers import SourceEnsemble, SourceTeacher, accuracy, fit_teacher
from kdlab.transfer.zoo import SourceZoo
from kdlab.transfer.zoo_model import build as build_zoo_model

METHODS = ("scratch", "finetune", "fixmatch", "uniform", "nearest", "weighted")
#: the small student every method of a comparison trains: ConvNet-3, width 8, batch norm
STUDENT = {"width": 8, "depth": 3, "norm": "batchnorm"}
SEMI_SUPERVISED = ("fixmatch", "uniform", "nearest", "weighted")


@dataclass
class Target:
    """A target task: a few labelled training images, the rest of its training images unlabelled, val, test."""

    name: str
    labelled: ArrayDataset
    unlabelled: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    seed: int = 0
    params: dict[str, Any] | None = None


def make_target(name: str = "digits", labels_per_class: int = 10, seed: int = 0, **params: Any) -> Target:
    """Target ``name`` whose train split keeps about ``labels_per_class`` labels per class (a stratified,
    seed-chosen subset, as the spec's ``n_train`` picks it) and the other training images unlabelled."""
    full = load(name, split="train", seed=seed, **params)
    n = labels_per_class * full.num_classes
    if not 1 <= labels_per_class or n >= len(full):
        raise ConfigError(f"labels_per_class: {labels_per_class} x {full.num_classes} classes must be below the "
                          f"{len(full)} training images of {name!r}")
    picked = stratified_subset(full.y.numpy(), n, seed)
    rest = np.setdiff1d(np.arange(len(full)), picked)
    return Target(name, full.subset(picked), full.subset(rest), load(name, "val", **params),
                  load(name, "test", **params), seed, dict(params))


def make_student(num_classes: int, in_shape: Sequence[int], seed: int | None = None, arch: str = "convnet",
                 params: Mapping[str, Any] | None = None) -> nn.Module:
    """A fresh student ``arch`` with ``params`` (default ``STUDENT``), its initialisation drawn from ``seed`` when
    one is given (else from the current torch RNG)."""
    if seed is not None:
        torch.manual_seed(seed)
    return create(arch, num_classes, tuple(in_shape), **dict(params or STUDENT))


def fit_teachers(zoo: SourceZoo, target: Target, sources: Sequence[str] | None = None,
                 features: Mapping[str, SourceFeatures] | None = None) -> dict[str, SourceTeacher]:
    """A frozen teacher per source with its head fitted on the labelled images (reusing ``features``)."""
    names = zoo.check(sources)
    feats = features or source_features(zoo, target.labelled, names)
    return {n: fit_teacher(zoo.load(n), target.labelled, features=feats[n].features) for n in names}


def run_method(method: str, zoo: SourceZoo, target: Target, scores: pd.DataFrame | None = None,
               metric: str = "linear_probe", temperature: float = 0.5, student: str = "convnet",
               student_params: Mapping[str, Any] | None = None, epochs: int = 30, batch_size: int = 16,
               lr: float = 0.05, unlabelled_ratio: int = 4, seed: int = 0,
               teachers: Mapping[str, SourceTeacher] | None = None) -> dict[str, Any]:
    """Train one method's student on ``target``; returns its test/val accuracy, sources, weights, time."""
    if method not in METHODS and not method.startswith("single:"):
        raise ConfigError(f"method: {method!r} is not one of {', '.join(METHODS)} or 'single:<source>'")
    if (method in SEMI_SUPERVISED or method.startswith("single:")) and len(target.unlabelled) == 0:
        raise ConfigError(f"target {target.name!r}: the unlabelled pool is empty; method {method!r} learns from "
                          f"unlabelled images ({', '.join(SEMI_SUPERVISED)} do; scratch and finetune do not)")
    needs_scores = method in ("finetune", "nearest", "weighted")
    if needs_scores and (scores is None or metric not in scores.columns):
        raise ConfigError(f"scores: method {method!r} needs rank_sources scores with column {metric!r}")
    t0 = time.perf_counter()
    names = list(scores.index) if scores is not None else zoo.names()
    teachers = dict(teachers) if teachers is not None else {}

    def teacher_of(name: str) -> SourceTeacher:
        if name not in teachers:
            teachers[name] = fit_teacher(zoo.load(name), target.labelled)
        return teachers[name]

    model = make_student(target.labelled.num_classes, target.labelled.in_shape, seed, student, student_params)
    semi = {"unlabelled_ratio": unlabelled_ratio}
    info: dict[str, Any] = {"method": method, "seed": seed, "sources": [], "weights": []}
    if method == "scratch":
        d = create_distiller("vanilla", None, model, target.labelled.in_shape)
    elif method == "finetune":
        src = best_source(scores, metric)
        model = build_zoo_model("zoo:" + src, src, target.labelled.num_classes, target.labelled.in_shape,
                                {"finetune": True, "root": str(zoo.root)})
        model.set_head(teacher_of(src).head.weight, teacher_of(src).head.bias)
        d = create_distiller("vanilla", None, model, target.labelled.in_shape)
        info["sources"] = [src]
    elif method == "fixmatch":
        d = create_distiller("fixmatch", None, model, target.labelled.in_shape, **semi)
    else:
        if method == "nearest" or method.startswith("single:"):
            chosen = [best_source(scores, metric)] if method == "nearest" else [method.split(":", 1)[1]]
            weights = [1.0]
        else:
            chosen = names
            weights = (source_weights(scores, temperature, metric)[chosen].tolist() if method == "weighted"
                       else [1.0 / len(chosen)] * len(chosen))
        zoo.check(chosen)
        teacher = SourceEnsemble([teacher_of(n) for n in chosen], weights, chosen)
        d = create_distiller("distill_weighted", teacher, model, target.labelled.in_shape, **semi)
        info.update(sources=chosen, weights=[float(w) for w in teacher.weights], teacher_test_acc=accuracy(
            teacher, target.test))
    if hasattr(d, "use_unlabelled"):
        d.use_unlabelled(target.unlabelled)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device="cpu", log_every=0)
    fit = Trainer(d, config).fit(target.labelled, target.val)
    info.update(test_acc=accuracy(d.student, target.test), val_acc=fit.last.get("val/acc"),
                seconds=time.perf_counter() - t0)
    return info


def transfer_specs(zoo: SourceZoo, target: Target, scores: pd.DataFrame, folder: str, metric: str = "linear_probe",
                   temperature: float = 0.5, epochs: int = 12, student_params: Mapping[str, Any] | None = None,
                   labels_per_class: int = 10) -> dict[str, dict[str, Any]]:
    """Experiment specs (plain dicts) of DistillNearest and DistillWeighted on ``target``, for background runs.

    Teachers' heads are fitted here on the labelled images the spec's ``n_train`` selects and saved under
    ``folder`` as teacher checkpoints; the unlabelled pool is the target's whole train split.
    """
    os.makedirs(folder, exist_ok=True)
    params = dict(target.params or {})
    data = {"name": target.name, "params": {**params, "n_train": len(target.labelled)}}
    student = {"name": "convnet", "params": dict(student_params or STUDENT)}
    method_params = {"unlabelled": target.name, "unlabelled_params": params}
    names = list(scores.index)
    out = {}
    for method in ("nearest", "weighted"):
        chosen = [best_source(scores, metric)] if method == "nearest" else names
        weights = [1.0] if method == "nearest" else source_weights(scores, temperature, metric)[chosen].tolist()
        teacher = SourceEnsemble(list(fit_teachers(zoo, target, chosen).values()), weights, chosen)
        ckpt = os.path.join(folder, f"teacher_{method}_{target.seed}.pt")
        torch.save({"model": teacher.state_dict()}, ckpt)
        out[method] = {
            "name": f"distill-{method}-{target.name}", "seed": target.seed, "data": data, "student": student,
            "teacher": {"name": "zoo:" + "+".join(chosen), "checkpoint": ckpt,
                        "params": {"root": str(zoo.root), "weights": [float(w) for w in weights]}},
            "method": {"name": "distill_weighted", "params": method_params},
            "optim": {"epochs": epochs, "batch_size": 16, "lr": 0.05}, "device": "cpu", "tags": ["source-selection"]}
    return out
