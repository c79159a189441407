"""Trainer overhead: kdlab's KD step vs a minimal hand-written PyTorch KD loop, same models and batches.

Both compute the teacher forward every step (no cache), CE + T^2 KL, SGD step; kdlab also records every
loss term, agreement, throughput and a step callback. Ratio = kdlab step time / hand-written step time.
Run: python bench/bench_trainer_overhead.py [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bench.common import markdown, save
from kdlab.data import load
from kdlab.distill import create_distiller
from kdlab.distill.trainer import Callback, TrainConfig, Trainer
from kdlab.models import create

BATCH = 128
STEPS = 20


def models():
    torch.manual_seed(0)
    teacher = create("convnet", 10, (1, 28, 28), width=64, norm="batchnorm").eval()
    student = create("convnet", 10, (1, 28, 28), width=16, depth=2, norm="batchnorm")
    return teacher, student


def hand_loop(train, teacher, student) -> float:
    """Seconds per step of the plainest KD loop."""
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(train), generator=g)
    student.train()
    t0 = time.perf_counter()
    for b in range(STEPS):
        idx = order[b * BATCH:(b + 1) * BATCH]
        x, y = train.x[idx], train.y[idx]
        with torch.no_grad():
            t_logits = teacher(x)
        s_logits = student(x)
        kd = F.kl_div(F.log_softmax(s_logits / 4, 1), F.log_softmax(t_logits / 4, 1), reduction="batchmean",
                      log_target=True) * 16
        loss = F.cross_entropy(s_logits, y) + kd
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / STEPS


class Sink(Callback):
    """Stands in for the run store: receives every step's and epoch's metrics."""

    def __init__(self):
        self.n = 0

    def on_step_end(self, trainer, metrics):
        self.n += 1

    def on_epoch_end(self, trainer, metrics):
        self.n += 1


def kdlab_loop(train, val, teacher, student) -> float:
    """Seconds per step of kdlab's trainer (one epoch of STEPS steps, telemetry on, cache off)."""
    d = create_distiller("kd", teacher, student, (1, 28, 28))
    cfg = TrainConfig(epochs=1, batch_size=BATCH, lr=0.05, cache_teacher=False, log_every=1, device="cpu")
    result = Trainer(d, cfg, [Sink()]).fit(train, val)
    return result.last["epoch_time"] / STEPS


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    full = load("mnist5k", split="train")
    train = full.subset(torch.arange(BATCH * STEPS))
    val = load("mnist5k", split="val").subset(torch.arange(128))
    teacher, student = models()
    hand, ours = [], []
    for i in range(args.repeats + 1):  # interleaved; the first pair is a warm-up
        _, s1 = models()
        h = hand_loop(train, teacher, s1)
        _, s2 = models()
        k = kdlab_loop(train, val, teacher, s2)
        if i:
            hand.append(h)
            ours.append(k)
    ratio = statistics.median(k / h for k, h in zip(ours, hand, strict=True))
    rows = [{"loop": "hand-written PyTorch KD", "ms/step (median)": 1e3 * statistics.median(hand)},
            {"loop": "kdlab Trainer (all telemetry)", "ms/step (median)": 1e3 * statistics.median(ours)}]
    text = (f"Trainer overhead, KD step, ConvNet-64 teacher -> ConvNet-16x2 student, batch {BATCH}, "
            f"{STEPS} steps x {args.repeats} interleaved repeats\n\n{markdown(rows)}\n\n"
            f"Median of the per-repeat ratios kdlab / hand-written: **{ratio:.3f}**; ratio of the medians: "
            f"{statistics.median(ours) / statistics.median(hand):.3f} (target <= 1.10)")
    save("trainer_overhead", text, {"hand": hand, "kdlab": ours, "ratio": ratio})


if __name__ == "__main__":
    main()
