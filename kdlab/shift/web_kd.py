"""KD3 (Tang et al., ICCV 2023): distilling a teacher into a student using only a shifted, noisily labelled
"web" pool, by dynamic instance selection from the teacher's and student's combined predictions and weighted
feature alignment; compared with plain KD and KD + cross-entropy on the web labels.

Setting of ``study_kd3``: the teacher is the zoo's ``mnist`` source (trained on clean mnist5k); the web pool is
the mnist5k train images under a shift (per-image rotation, noise, blur) with a share of labels flipped to another
class; the width-8 student sees only the pool and is scored on the clean mnist5k test split (the target).

Departures from the paper: the selection uses no web labels (teacher + student only, as in the paper's
data-free setting); the feature/classifier alignment is a weighted feature alignment through a linear adapter
(the classifier-parameter alignment is left out); the MixDistribution contrastive block is left out.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.data.api import load, shifted
from kdlab.data.base import ArrayDataset, cycle_batches
from kdlab.distill.functional import kl_div
from kdlab.errors import ConfigError
from kdlab.models.taps import FeatureTaps, num_logits
from kdlab.transfer.harness import STUDENT, make_student
from kdlab.transfer.teachers import accuracy, as_vector, embedding_layer

Progress = Callable[[int, int, str], None] | None
WEB_SHIFT = (("rotate", 0.3, {"per_image": True}), ("noise", 0.3), ("blur", 0.5))
KD3_METHODS = ("kd", "kd_ce", "kd3")


@dataclass
class WebPool:
    """A web pool: images with their (noisy) web labels in ``data.y`` and the true labels in ``clean_y``."""

    data: ArrayDataset
    clean_y: torch.Tensor

    @property
    def label_clean(self) -> torch.Tensor:
        """Boolean (N,): whether each web label equals the true label."""
        return self.data.y == self.clean_y


def make_web_pool(data: ArrayDataset, shift: Sequence = WEB_SHIFT, noise_rate: float = 0.35,
                  seed: int = 0) -> WebPool:
    """Shift ``data``'s images and flip a ``noise_rate`` share of its labels to a uniformly drawn other class."""
    if not 0.0 <= noise_rate < 1.0:
        raise ConfigError(f"noise_rate: must be in [0, 1), got {noise_rate}")
    if len(data) == 0:
        raise ConfigError("web_pool: empty dataset; give at least one image")
    shown = shifted(data, shift=list(shift), split="train", seed=seed)
    g = torch.Generator().manual_seed(seed * 7919 + 17)
    k = data.num_classes
    flip = torch.rand(len(data), generator=g) < noise_rate
    other = (data.y + torch.randint(1, max(k, 2), (len(data),), generator=g)) % k
    noisy = torch.where(flip, other, data.y)
    web = ArrayDataset(shown.x, noisy, f"{data.name}-web", list(data.classes), data.source)
    return WebPool(web, data.y.clone())


def check_pool(teacher: nn.Module, pool: ArrayDataset) -> None:
    """Refuse an empty pool or a teacher whose class count differs from the pool's labels."""
    if len(pool) == 0:
        raise ConfigError("web_pool: empty dataset; give at least one image")
    k = num_logits(teacher, pool.in_shape)
    if k != pool.num_classes:
        raise ConfigError(f"teacher: gives {k} class logits but web_pool has {pool.num_classes} classes; "
                          "the teacher must predict the pool's label set")


def select_instances(teacher_logits: torch.Tensor, student_logits: torch.Tensor, threshold: float = 0.5,
                     student_weight: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """KD3's dynamic selection from the combined prediction p = (1 - a) p_teacher + a p_student (a =
    ``student_weight``): keep a sample when the student predicts the teacher's class (required when a > 0) and
    the combined confidence in that class reaches ``threshold``; weights are that confidence, normalised to
    sum to 1 over the batch. ``a = 0`` (the warm-up, while the student is still random) uses the teacher alone.

    Returns (selected bool (N,), weights (N,)); weights are all zero when nothing is selected.
    """
    p_t, p_s = F.softmax(teacher_logits.detach(), 1), F.softmax(student_logits.detach(), 1)
    k_t = p_t.argmax(1)
    conf = ((1 - student_weight) * p_t + student_weight * p_s).gather(1, k_t[:, None])[:, 0]
    selected = conf >= threshold
    if student_weight > 0:
        selected &= p_s.argmax(1) == k_t
    raw = conf * selected
    return selected, raw / raw.sum().clamp(min=1e-12)


def kd3_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor, teacher_feat: torch.Tensor,
             adapted_feat: torch.Tensor, weights: torch.Tensor, temperature: float = 4.0,
             beta: float = 1.0) -> dict[str, torch.Tensor]:
    """Weighted KD term sum_i w_i KL_i and weighted feature alignment beta * sum_i w_i ||A f_s - f_t||^2 / D."""
    kl = kl_div(student_logits, teacher_logits, temperature, reduction="none").sum(1)
    align = (adapted_feat - teacher_feat.detach()).pow(2).mean(1)
    return {"kd": (weights * kl).sum(), "align": beta * (weights * align).sum()}


def train_web(method: str, teacher: nn.Module, pool: ArrayDataset, steps: int = 300, batch_size: int = 64,
              lr: float = 3e-3, temperature: float = 4.0, threshold: float = 0.5, beta: float = 1.0,
              ce_weight: float = 1.0, warmup: float = 0.3, seed: int = 0,
              student_width: int = 8) -> tuple[nn.Module, nn.Module | None]:
    """Train a student on ``pool`` by ``method``: "kd" (KL to the teacher on every sample), "kd_ce" (KD plus
    cross-entropy on the web labels) or "kd3" (selected, weighted KD + weighted feature alignment).

    kd3 selects by the teacher alone over the first ``warmup`` share of the steps (a random student's vote would
    make the selection confirm its own initial bias), then by the combined prediction with student weight 0.5.
    Returns (student, adapter); the adapter is None except for kd3.
    """
    if method not in KD3_METHODS:
        raise ConfigError(f"method: unknown {method!r}; valid: {', '.join(KD3_METHODS)}")
    if steps < 1:
        raise ConfigError(f"steps: must be >= 1, got {steps}")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold: must be in [0, 1], got {threshold}")
    if not 0.0 <= warmup <= 1.0:
        raise ConfigError(f"warmup: must be a share of the steps in [0, 1], got {warmup}")
    check_pool(teacher, pool)
    teacher.eval()
    student = make_student(pool.num_classes, pool.in_shape, seed, params={**STUDENT, "width": student_width})
    t_layer, s_layer = embedding_layer(teacher), embedding_layer(student)
    adapter = None
    params = list(student.parameters())
    if method == "kd3":
        with torch.no_grad(), FeatureTaps(teacher, [t_layer], clone=False) as tt, \
                FeatureTaps(student, [s_layer], clone=False) as ts:
            student.eval()
            teacher(pool.x[:1]), student(pool.x[:1])
            d_t, d_s = as_vector(tt[t_layer]).shape[1], as_vector(ts[s_layer]).shape[1]
            student.train()
        adapter = nn.Linear(d_s, d_t)
        params += list(adapter.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    student.train()
    with FeatureTaps(teacher, [t_layer], clone=False, detach=True) as tt, \
            FeatureTaps(student, [s_layer], clone=False) as ts:
        for step, (x, y, _) in enumerate(cycle_batches(pool, batch_size, steps, seed)):
            with torch.no_grad():
                t_logits = teacher(x)
            s_logits = student(x)
            if method == "kd":
                loss = kl_div(s_logits, t_logits, temperature)
            elif method == "kd_ce":
                loss = kl_div(s_logits, t_logits, temperature) + ce_weight * F.cross_entropy(s_logits, y)
            else:
                a = 0.0 if step < warmup * steps else 0.5
                _, w = select_instances(t_logits, s_logits, threshold, a)
                f_t, f_s = as_vector(tt[t_layer]), as_vector(ts[s_layer])
                terms = kd3_loss(t_logits, s_logits, f_t, adapter(f_s), w, temperature, beta)
                loss = terms["kd"] + terms["align"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    student.eval()
    return student, adapter


@torch.no_grad()
def selection_precision(teacher: nn.Module, student: nn.Module, pool: WebPool,
                        threshold: float = 0.5) -> dict[str, float]:
    """Share of the pool selected by KD3's rule (final student) and, among the selected, the share whose web
    label is clean and whose teacher prediction is right; the pool's base rates beside them."""
    teacher.eval(), student.eval()
    t_logits, s_logits = teacher(pool.data.x), student(pool.data.x)
    sel, _ = select_instances(t_logits, s_logits, threshold)
    teacher_right = t_logits.argmax(1) == pool.clean_y
    n = max(int(sel.sum()), 1)
    return {"selected_share": float(sel.float().mean()),
            "label_clean_precision": float((pool.label_clean & sel).sum()) / n,
            "teacher_right_precision": float((teacher_right & sel).sum()) / n,
            "label_clean_base": float(pool.label_clean.float().mean()),
            "teacher_right_base": float(teacher_right.float().mean())}


def study_kd3(zoo, seed: int = 0, scale: float = 1.0, progress: Progress = None) -> dict:
    """KD3 vs plain KD vs KD + CE on the noisy web labels, same steps, scored on the clean mnist5k test.

    Returns {"study": "kd3", "seed", "table": [{method, test set, accuracy}], "summary": {"kd3_minus_kd",
    "kd3_minus_kd_ce"}, "selection": selection_precision(...) of the KD3 student, "setting": {...},
    "seconds"}.
    """
    if scale <= 0:
        raise ConfigError(f"scale: must be > 0, got {scale}")
    t0 = time.perf_counter()
    steps = max(1, round(250 * scale))
    teacher = zoo.load("mnist")
    pool = make_web_pool(load("mnist5k", split="train", seed=seed), noise_rate=0.35, seed=seed)
    test = load("mnist5k", split="test", seed=seed)
    rows, acc, students = [], {}, {}
    total = len(KD3_METHODS) + 1
    if progress:
        progress(0, total, "teacher")
    rows.append({"method": "teacher", "test set": "clean target", "accuracy": accuracy(teacher, test)})
    with torch.no_grad():
        right = float((teacher(pool.data.x).argmax(1) == pool.clean_y).float().mean())
    rows.append({"method": "teacher", "test set": "web pool (true labels)", "accuracy": right})
    for i, m in enumerate(KD3_METHODS, 1):
        students[m], _ = train_web(m, teacher, pool.data, steps=steps, seed=seed)
        acc[m] = accuracy(students[m], test)
        rows.append({"method": m, "test set": "clean target", "accuracy": acc[m]})
        if progress:
            progress(i, total, f"{m}: {acc[m]:.3f}")
    sel = selection_precision(teacher, students["kd3"], pool)
    return {"study": "kd3", "seed": seed, "table": rows,
            "summary": {"kd3_minus_kd": acc["kd3"] - acc["kd"], "kd3_minus_kd_ce": acc["kd3"] - acc["kd_ce"]},
            "selection": sel,
            "setting": {"teacher": "zoo mnist (ConvNet-3 width 16)", "student": "convnet width 8 depth 3",
                        "web_pool": f"mnist5k train ({len(pool.data)}) shifted {list(map(list, WEB_SHIFT))}, "
                                    "35% labels flipped", "target_test": f"mnist5k test ({len(test)})",
                        "steps": steps, "batch_size": 64},
            "seconds": time.perf_counter() - t0}
