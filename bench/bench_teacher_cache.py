"""Teacher-output cache: KD epoch cost with cached teacher outputs, and without, over a student-only epoch.

Same data (mnist5k train, 3,500 images), batch 128, ConvNet-64 teacher, MLP and small-CNN students, one
thread. The cost of an epoch (training plus validation) is the process CPU time between the ends of
consecutive epochs: unlike wall time it does not move when other jobs share the cores. Wall time is
reported beside it. Run: python -m bench.bench_teacher_cache [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from bench.common import markdown, save
from kdlab.data import load
from kdlab.distill import create_distiller
from kdlab.distill.trainer import Callback, TrainConfig, Trainer
from kdlab.models import create

STUDENTS = {"mlp": {"width": 256}, "convnet": {"width": 16, "depth": 2, "norm": "batchnorm"}}


class EpochClock(Callback):
    """Process CPU time and wall time at each epoch end."""

    def __init__(self):
        self.cpu: list[float] = []
        self.wall: list[float] = []

    def on_epoch_end(self, trainer, metrics) -> None:
        self.cpu.append(time.process_time())
        self.wall.append(time.perf_counter())


def epoch_costs(method: str, student: str, cache: bool, train, val, teacher, epochs: int) -> tuple[list, list]:
    """CPU and wall seconds of epochs 2..``epochs`` of one fit (the first epoch carries the cache build)."""
    torch.manual_seed(0)
    s = create(student, 10, (1, 28, 28), **STUDENTS[student])
    d = create_distiller(method, teacher if method != "vanilla" else None, s, (1, 28, 28))
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=0.05, cache_teacher=cache, log_every=10, device="cpu")
    clock = EpochClock()
    Trainer(d, cfg, callbacks=[clock]).fit(train, val)
    diff = lambda xs: [b - a for a, b in zip(xs[:-1], xs[1:], strict=True)]  # noqa: E731
    return diff(clock.cpu), diff(clock.wall)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5, help="rounds of 2 epochs per setting (median taken)")
    args = p.parse_args()
    load_before = os.getloadavg()
    train, val = load("mnist5k", split="train"), load("mnist5k", split="val")
    torch.manual_seed(0)
    teacher = create("convnet", 10, (1, 28, 28), width=64, norm="batchnorm").eval()
    rows, data = [], {}
    settings = (("student only (vanilla)", "vanilla", False), ("KD, cached teacher", "kd", True),
                ("KD, uncached teacher", "kd", False))
    torch.set_num_threads(1)
    for student in STUDENTS:
        cpu: dict[str, list[float]] = {name: [] for name, _, _ in settings}
        wall: dict[str, list[float]] = {name: [] for name, _, _ in settings}
        for _ in range(args.repeats):  # rounds interleave the settings
            for name, method, cache in settings:
                c, w = epoch_costs(method, student, cache, train, val, teacher, 3)
                cpu[name] += c
                wall[name] += w
        b = statistics.median(cpu[settings[0][0]])
        for name, _, _ in settings:
            rows.append({"student": student, "epoch": name, "CPU s/epoch (median)": statistics.median(cpu[name]),
                         "ratio to student-only": statistics.median(cpu[name]) / b,
                         "wall s/epoch (median)": statistics.median(wall[name])})
        data[student] = {"cpu": cpu, "wall": wall}
    text = (f"Teacher cache, mnist5k train (3,500 images), batch 128, ConvNet-64 teacher, one thread; median of "
            f"{2 * args.repeats} epochs each (epochs 2-3 of {args.repeats} fits per setting, settings "
            f"interleaved); an epoch is training plus validation\n\n{markdown(rows)}\n\n"
            "Target: KD cached / student-only <= 1.3 (CPU time). The cache is built once, before the first "
            "epoch (one teacher pass over the training set), and is not in these figures.\n\nLoad average (1, 5, 15 "
            f"min) at the start: {', '.join(f'{v:.2f}' for v in load_before)}; at the end: "
            f"{', '.join(f'{v:.2f}' for v in os.getloadavg())} (this bench's own thread counts 1).")
    save("teacher_cache", text, data)


if __name__ == "__main__":
    main()
