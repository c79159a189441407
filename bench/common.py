"""Shared helpers for the bench scripts: machine description, repeated timing, markdown output."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

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
