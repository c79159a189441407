"""Shared helpers for the bench scripts: machine description, repeated timing, markdown output."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

OUT = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """One line naming the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}{gpu}")


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs, and all the times."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def markdown(rows: list[dict], floatfmt: str = "{:.4g}") -> str:
    """A markdown table of ``rows`` (dicts with the same keys)."""
    if not rows:
        return ""
    keys = list(rows[0])
    fmt = lambda v: floatfmt.format(v) if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def save(name: str, text: str, data: object) -> None:
    """Write ``results/<name>.md`` (with the machine line) and ``results/<name>.json``; print the text."""
    OUT.mkdir(exist_ok=True)
    body = f"Machine: {machine()}\n\n{text}\n"
    (OUT / f"{name}.md").write_text(body)
    (OUT / f"{name}.json").write_text(json.dumps(data, indent=2, default=float))
    print(body)

#: Transformers do not train with the CNNs' SGD at lr 0.05 in a few epochs; they get AdamW, as in the ViT papers.
VIT_OPTIM = {"optimizer": "adamw", "lr": 2e-3, "weight_decay": 0.05}


def kd_setup(teacher_epochs: int) -> tuple[Any, Any, Any, Any, Callable[..., Any]]:
    """The KD benches' common start on mnist5k: one thread, the three splits, a ConvNet-3 (width 32) teacher
    trained for ``teacher_epochs``, and ``train_kd(student, epochs, **options)`` for students."""
    from kdlab.data import load
    from kdlab.distill import create_distiller
    from kdlab.distill.trainer import TrainConfig, Trainer
    from kdlab.models import create

    torch.set_num_threads(1)
    train, val, test = (load("mnist5k", split=s) for s in ("train", "val", "test"))

    def fit(teacher: Any, student: Any, epochs: int, **options: Any) -> None:
        cfg = TrainConfig(**{"epochs": epochs, "batch_size": 64, "lr": 0.05, "device": "cpu", "seed": 0, **options})
        Trainer(create_distiller("kd" if teacher is not None else "vanilla", teacher, student, train.in_shape),
                cfg).fit(train, val)

    torch.manual_seed(0)
    teacher = create("convnet", 10, train.in_shape, width=32, depth=3)
    fit(None, teacher, teacher_epochs)
    return train, val, test, teacher, lambda student, epochs, **o: fit(teacher, student, epochs, **o)


def mean_std(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    """'mean ± std' of ``values`` times ``scale`` (100: fractions as percent points); std 0 for one value."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.{digits}f} ± {scale * sd:.{digits}f}"
