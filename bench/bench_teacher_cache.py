"""Teacher-output cache: KD epoch time with cached teacher outputs, and without, over a student-only epoch.

Same data (mnist5k train, 3,500 images), batch 128, ConvNet-64 teacher, MLP and small-CNN students.
Run: python -m bench.bench_teacher_cache [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.common import markdown, save
from kdlab.data import load
from kdlab.distill import create_distiller
from kdlab.distill.trainer import TrainConfig, Trainer
from kdlab.models import create

STUDENTS = {"mlp": {"width": 256}, "convnet": {"width": 16, "depth": 2, "norm": "batchnorm"}}


def epoch_times(method: str, student: str, cache: bool, train, val, teacher, epochs: int) -> tuple[list, float]:
    torch.manual_seed(0)
    s = create(student, 10, (1, 28, 28), **STUDENTS[student])
    d = create_distiller(method, teacher if method != "vanilla" else None, s, (1, 28, 28))
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=0.05, cache_teacher=cache, log_every=10, device="cpu")
    t0 = time.perf_counter()
    result = Trainer(d, cfg).fit(train, val)
    total = time.perf_counter() - t0
    return [h["epoch_time"] for h in result.history], total


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5, help="rounds of 2 epochs per setting (median taken)")
    args = p.parse_args()
    train, val = load("mnist5k", split="train"), load("mnist5k", split="val")
    torch.manual_seed(0)
    teacher = create("convnet", 10, (1, 28, 28), width=64, norm="batchnorm").eval()
    rows, data = [], {}
    settings = (("student only (vanilla)", "vanilla", False), ("KD, cached teacher", "kd", True),
                ("KD, uncached teacher", "kd", False))
    for student in STUDENTS:
        times: dict[str, list[float]] = {name: [] for name, _, _ in settings}
        build: list[float] = []
        for _ in range(args.repeats):  # rounds interleave the settings, so load changes hit all alike
            for name, method, cache in settings:
                epochs, total = epoch_times(method, student, cache, train, val, teacher, 2)
                times[name] += epochs
                if cache:
                    build.append(total - sum(epochs))
        b = statistics.median(times[settings[0][0]])
        for name, _, _ in settings:
            rows.append({"student": student, "epoch": name, "s/epoch (median)": statistics.median(times[name]),
                         "ratio to student-only": statistics.median(times[name]) / b})
        data[student] = {**times, "cache_build_and_eval_s": build}
    text = (f"Teacher cache, mnist5k train (3,500 images), batch 128, ConvNet-64 teacher, median of "
            f"{2 * args.repeats} epochs each (settings interleaved)\n\n{markdown(rows)}\n\n"
            "Target: KD cached / student-only <= 1.3. "
            "The cache is built once before the first epoch (one teacher pass over the training set).")
    save("teacher_cache", text, data)


if __name__ == "__main__":
    main()
