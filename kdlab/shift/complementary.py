"""Complementary knowledge between any two pretrained models, and its transfer (Roth et al., ICLR 2024, "Fantastic
Gains and Where to Find Them").

Two models trained on different data each get right samples the other gets wrong. ``complementary_knowledge`` is
the share of samples the teacher classifies correctly and the student not (the positive prediction flips a perfect
transfer would bring). ``transfer`` distils the teacher into a copy of the student by KL divergence with *data
partitioning*: per sample, the target is the teacher's distribution where the teacher is more confident (higher max
softmax probability) than the frozen initial student, and the initial student's own distribution elsewhere, so the
student learns only where the teacher knows better and keeps what it knew; ``partition=False`` is plain KD (the
teacher everywhere), which loses when the teacher is weaker. ``pair_gains`` runs both on every ordered pair of a set
of models; ``study_complementary`` does it on a ``SourceZoo``'s domains.

Departures from the paper: the transfer data are an unlabelled mixture of the sources' own train domains, not
ImageNet; the student trains by SGD with momentum for tens of steps, not epochs, in train mode (its batch-norm
statistics follow the mixture: ``study_complementary`` reports self-transfer, the student as its own teacher, as the
control for that); the confidences that partition the data are the plain (temperature 1) softmax maxima, whatever the
distillation temperature.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.data.base import ArrayDataset, cycle_batches
from kdlab.distill.functional import kl_div
from kdlab.errors import ConfigError
from kdlab.models.inference import predict
from kdlab.transfer.zoo import SourceZoo, trainable_copy

Progress = Callable[[int, int, str], None]

#: ``study_complementary`` at scale 1: transfer steps per pair, batch size, learning rate, temperature, and the
#: images per domain in the unlabelled transfer pool and in the evaluation set
STUDY = {"steps": 30, "batch_size": 32, "lr": 0.01, "temperature": 1.0, "pool_per_domain": 200,
         "eval_per_domain": 100}


def partition_mask(teacher_logits: torch.Tensor, initial_logits: torch.Tensor) -> torch.Tensor:
    """True where the teacher is more confident (higher max softmax probability) than the initial student: the
    samples whose target is the teacher's; ties stay with the student."""
    if teacher_logits.shape != initial_logits.shape:
        raise ConfigError(f"logits: teacher {tuple(teacher_logits.shape)} and student {tuple(initial_logits.shape)} "
                          "must have the same shape (N, classes)")
    return F.softmax(teacher_logits.float(), 1).amax(1) > F.softmax(initial_logits.float(), 1).amax(1)


def transfer_targets(teacher_logits: torch.Tensor, initial_logits: torch.Tensor,
                     partition: bool = True) -> torch.Tensor:
    """The target logits of each sample: the teacher's where ``partition_mask`` holds (everywhere without
    partitioning), the frozen initial student's elsewhere."""
    if not partition:
        return teacher_logits
    return torch.where(partition_mask(teacher_logits, initial_logits)[:, None], teacher_logits, initial_logits)


def transfer_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, initial_logits: torch.Tensor,
                  temperature: float = 1.0, partition: bool = True) -> torch.Tensor:
    """T^2 KL(p_target || p_student) at temperature T, batch mean, with the per-sample targets of
    ``transfer_targets``."""
    return kl_div(student_logits, transfer_targets(teacher_logits, initial_logits, partition), temperature)


def _as_pool(pool: ArrayDataset | torch.Tensor) -> ArrayDataset:
    """The transfer pool as a dataset (its labels, if any, are never used)."""
    if isinstance(pool, torch.Tensor):
        if pool.ndim != 4:
            raise ConfigError(f"pool: a tensor pool must be images (N, C, H, W), got shape {tuple(pool.shape)}")
        pool = ArrayDataset(pool, torch.zeros(len(pool), dtype=torch.long), name="pool")
    if not isinstance(pool, ArrayDataset):
        raise ConfigError(f"pool: expected an ArrayDataset or an (N, C, H, W) tensor, got {type(pool).__name__}")
    if len(pool) == 0:
        raise ConfigError("pool: the transfer pool is empty; give at least one unlabelled sample")
    return pool


def _check_options(steps: int, lr: float, batch_size: int, temperature: float) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps: must be an integer >= 1, got {steps!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: must be an integer >= 1, got {batch_size!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr: must be a finite number > 0, got {lr!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"temperature: must be a finite number > 0, got {temperature!r}")


def _check_classes(classes: Mapping[str, int], field: str = "models") -> None:
    """Refuse models of different class counts, naming the groups that could be paired."""
    groups: dict[int, list[str]] = {}
    for name, k in classes.items():
        groups.setdefault(k, []).append(name)
    if len(groups) > 1:
        listed = "; ".join(f"{k} classes: {', '.join(names)}" for k, names in groups.items())
        raise ConfigError(f"{field}: the teacher and the student must predict the same classes (partitioning "
                          f"compares the two models' predictions over one label space); compatible groups are {listed}")


def _train(student: nn.Module, pool: ArrayDataset, targets: torch.Tensor, steps: int, lr: float, batch_size: int,
           temperature: float, seed: int) -> nn.Module:
    """``steps`` SGD steps of ``student`` (in place, train mode) towards the per-sample target logits ``targets`` by
    T^2 KL(target || student); returned in eval mode."""
    student.train()
    opt = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9)
    device = next(student.parameters()).device
    for x, _y, idx in cycle_batches(pool, min(batch_size, len(pool)), steps, seed, drop_last=False):
        loss = kl_div(student(x.to(device)), targets[idx].to(device), temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return student.eval()


def transfer(teacher: nn.Module, student: nn.Module, pool: ArrayDataset | torch.Tensor, steps: int = 100,
             lr: float = 0.01, batch_size: int = 32, partition: bool = True, temperature: float = 1.0,
             seed: int = 0) -> nn.Module:
    """A new student: a copy of ``student`` distilled from ``teacher`` on the unlabelled ``pool`` (data-partitioned
    KL, or plain KD with ``partition=False``); the teacher and the given student are not modified."""
    _check_options(steps, lr, batch_size, temperature)
    pool = _as_pool(pool)
    teacher_logits, initial_logits = predict(teacher, pool), predict(student, pool)  # the frozen initial student
    _check_classes({"teacher": teacher_logits.shape[1], "student": initial_logits.shape[1]})
    targets = transfer_targets(teacher_logits, initial_logits, partition)
    return _train(trainable_copy(student), pool, targets, steps, lr, batch_size, temperature, seed)


def _correct(model: nn.Module, data: ArrayDataset) -> torch.Tensor:
    return predict(model, data).argmax(1) == data.y


def complementary_knowledge(teacher: nn.Module, student: nn.Module, data: ArrayDataset) -> float:
    """Share of ``data`` the teacher classifies correctly and the student incorrectly (positive flips)."""
    if not isinstance(data, ArrayDataset) or len(data) == 0:
        raise ConfigError("data: expected a non-empty labelled ArrayDataset to count prediction flips on")
    return float((_correct(teacher, data) & ~_correct(student, data)).double().mean())


@dataclass
class PairGains:
    """Accuracies of every ordered (teacher i, student j) transfer on one evaluation set (fractions): ``before[j]``
    of student j alone, ``after[i, j]`` after partitioned transfer from i, ``after_kd[i, j]`` after plain KD;
    ``complementary[i, j]`` the share teacher i gets right and student j wrong; diagonals are NaN. ``self_after[j]``:
    student j after the same training with itself as teacher (the control: what the steps alone change)."""

    names: list[str]
    before: np.ndarray
    after: np.ndarray
    after_kd: np.ndarray
    complementary: np.ndarray
    self_after: np.ndarray

    @property
    def gains(self) -> np.ndarray:
        """Accuracy gain of student j (column) from teacher i (row), in points."""
        return 100.0 * (self.after - self.before[None, :])

    @property
    def kd_gains(self) -> np.ndarray:
        """The same gains for plain KD, in points."""
        return 100.0 * (self.after_kd - self.before[None, :])

    @property
    def self_gains(self) -> np.ndarray:
        """Accuracy change of each student taught by itself, in points (the control)."""
        return 100.0 * (self.self_after - self.before)


def pair_gains(models: Mapping[str, nn.Module], pool: ArrayDataset | torch.Tensor, evaluation: ArrayDataset,
               steps: int = 100, lr: float = 0.01, batch_size: int = 32, temperature: float = 1.0, seed: int = 0,
               progress: Progress | None = None) -> PairGains:
    """Partitioned transfer and plain KD for every ordered pair of ``models`` on ``pool``, each evaluated on
    ``evaluation``; the models are not modified (each student is a copy)."""
    names = list(models)
    if len(names) < 2:
        raise ConfigError(f"models: need at least 2 models to pair, got {len(names)}")
    if not isinstance(evaluation, ArrayDataset) or len(evaluation) == 0:
        raise ConfigError("evaluation: expected a non-empty labelled ArrayDataset")
    _check_options(steps, lr, batch_size, temperature)
    pool = _as_pool(pool)
    logits = {n: predict(models[n], pool) for n in names}  # teacher and frozen-initial-student logits alike
    _check_classes({n: logits[n].shape[1] for n in names})
    correct = {n: _correct(models[n], evaluation) for n in names}
    k = len(names)
    before = np.array([float(correct[n].double().mean()) for n in names])
    after, after_kd, comp = (np.full((k, k), np.nan) for _ in range(3))
    self_after = np.full(k, np.nan)
    total, done = 2 * k * (k - 1) + k, 0
    for i, t in enumerate(names):
        for j, s in enumerate(names):
            if i == j:
                if progress:
                    progress(done, total, f"self-transfer {s}")
                new = _train(trainable_copy(models[s]), pool, logits[s], steps, lr, batch_size, temperature, seed)
                self_after[j] = float(_correct(new, evaluation).double().mean())
                done += 1
                continue
            comp[i, j] = float((correct[t] & ~correct[s]).double().mean())
            for part, out in ((True, after), (False, after_kd)):
                if progress:
                    progress(done, total, f"{'partitioned' if part else 'plain KD'} {t} -> {s}")
                targets = transfer_targets(logits[t], logits[s], part)
                new = _train(trainable_copy(models[s]), pool, targets, steps, lr, batch_size, temperature, seed)
                out[i, j] = float(_correct(new, evaluation).double().mean())
                done += 1
    if progress:
        progress(total, total, "pair gains done")
    return PairGains(names, before, after, after_kd, comp, self_after)


def _sample(data: ArrayDataset, n: int, gen: np.random.Generator) -> ArrayDataset:
    return data.subset(np.sort(gen.choice(len(data), size=min(n, len(data)), replace=False)))


def _concat(parts: Sequence[ArrayDataset], name: str) -> ArrayDataset:
    return ArrayDataset(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]), name,
                        list(parts[0].classes))


def _none(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def study_complementary(zoo: SourceZoo, seed: int = 0, scale: float = 1.0, progress: Progress | None = None,
                        sources: Sequence[str] | None = None) -> dict:
    """Pair gains of complementary-knowledge transfer over the zoo's built-in sources of one label space.

    ``sources`` default: the built-in sources with the most common class count (the 10-digit ones of the default
    zoo); mixed class counts are refused. Transfer pool: ``pool_per_domain * scale`` unlabelled train images of every
    source's domain; evaluation: ``eval_per_domain * scale`` test images of every domain (an equal mixture); steps
    scale too. Returns ``{"study": "complementary", "seed", "names", "before": accuracy per source (%), "gains" and
    "kd_gains": teacher (row) x student (column) accuracy change in points, "complementary": % of the evaluation the
    teacher gets right and the student wrong (diagonals None), "self_gains": per source, points, after the same
    training with itself as teacher (the control), "table": one row per pair, "summary": {"share_gain", "mean_gain",
    "share_gain_kd", "mean_gain_kd", "mean_complementary", "mean_gain_self"}, "settings"}``.
    """
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ConfigError(f"scale: must be a finite number > 0, got {scale!r}")
    if sources is None:
        built_in = [n for n in zoo.names() if n in zoo.defs]
        classes = {n: zoo.card(n).classes for n in built_in}
        common = Counter(classes.values()).most_common(1)[0][0] if classes else 0
        sources = [n for n in built_in if classes[n] == common]
    names = zoo.check(sources)
    missing = [n for n in names if n not in zoo.defs]
    if missing:
        raise ConfigError(f"sources: {', '.join(missing)} have no domain data (user sources); choose among "
                          f"{', '.join(zoo.defs)}")
    if len(names) < 2:
        raise ConfigError(f"sources: need at least 2 sources to pair, got {names}")
    _check_classes({n: zoo.card(n).classes for n in names}, "sources")
    steps = max(1, round(STUDY["steps"] * scale))
    gen = np.random.default_rng(seed)
    splits = {n: zoo.splits(zoo.defs[n]) for n in names}
    pool = _concat([_sample(splits[n][0], round(STUDY["pool_per_domain"] * scale), gen) for n in names], "pool")
    evaluation = _concat([_sample(splits[n][2], round(STUDY["eval_per_domain"] * scale), gen) for n in names],
                         "evaluation")
    models = {n: zoo.load(n) for n in names}
    pg = pair_gains(models, pool, evaluation, steps, STUDY["lr"], STUDY["batch_size"], STUDY["temperature"], seed,
                    progress)
    gains, kd, comp = pg.gains, pg.kd_gains, 100.0 * pg.complementary
    off = ~np.eye(len(names), dtype=bool)
    table = [{"teacher": t, "student": s, "before": 100.0 * float(pg.before[j]),
              "complementary": float(comp[i, j]), "gain": float(gains[i, j]), "gain_kd": float(kd[i, j])}
             for i, t in enumerate(names) for j, s in enumerate(names) if i != j]
    summary = {"share_gain": float((gains[off] > 0).mean()), "mean_gain": float(gains[off].mean()),
               "share_gain_kd": float((kd[off] > 0).mean()), "mean_gain_kd": float(kd[off].mean()),
               "mean_complementary": float(comp[off].mean()), "mean_gain_self": float(pg.self_gains.mean())}
    return {"study": "complementary", "seed": int(seed), "names": names,
            "before": [100.0 * float(b) for b in pg.before], "self_gains": [float(v) for v in pg.self_gains],
            "gains": [[_none(v) for v in row] for row in gains], "kd_gains": [[_none(v) for v in row] for row in kd],
            "complementary": [[_none(v) for v in row] for row in comp], "table": table, "summary": summary,
            "settings": {**STUDY, "steps": steps, "scale": float(scale), "pool": len(pool),
                         "evaluation": len(evaluation)}}
