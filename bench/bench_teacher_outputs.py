"""Teacher outputs stored by content across runs (``kdlab.distill.teacher_outputs``): the cost of one training run
(a sweep trial) with its teacher's outputs computed in the run, against loaded from the store.

mnist5k (3,500 train, 500 val, 1,000 test), ConvNet teacher (trained once, cached), MLP student, KD, 10 epochs,
one thread, in-process (no worker start-up), median of ``--repeats`` runs each. CPU seconds are the process's
(they do not move when other jobs share the cores); wall seconds beside them.

    python -m bench.bench_teacher_outputs [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

import torch

from bench.common import markdown, save

SPEC = {"name": "bench-outputs", "device": "cpu", "data": {"name": "mnist5k"}, "student": {"name": "mlp"},
        "method": {"name": "kd"}, "optim": {"epochs": 10, "batch_size": 128}}


def one_run() -> tuple[float, float]:
    """CPU and wall seconds of one ``run_experiment`` of ``SPEC`` (with the cache ``KDLAB_CACHE`` names)."""
    from kdlab.runs.experiment import run_experiment

    c0, w0 = time.process_time(), time.perf_counter()
    run_experiment(SPEC)
    return time.process_time() - c0, time.perf_counter() - w0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from kdlab.paths import cache_dir

    teachers = cache_dir("teachers")  # the shared teacher cache: trained once, then loaded by both variants
    one_run()  # trains (or loads) the teacher; stores its outputs

    rows, times = [], {}
    for stored in (False, True):
        cpu, wall = [], []
        for _ in range(args.repeats):
            if not stored:  # the cache without stored outputs: computed in the run, as before this change
                fresh = os.path.join(tempfile.mkdtemp(), "cache")
                shutil.copytree(teachers.parent, fresh, ignore=shutil.ignore_patterns("teacher_outputs"))
                os.environ["KDLAB_CACHE"] = fresh
            else:
                os.environ["KDLAB_CACHE"] = str(teachers.parent)
            c, w = one_run()
            cpu.append(c)
            wall.append(w)
        times[stored] = (statistics.median(cpu), statistics.median(wall))
        rows.append({"teacher outputs": "loaded from the store" if stored else "computed in the run",
                     "CPU s (median)": times[stored][0], "wall s (median)": times[stored][1],
                     "runs": args.repeats})
    text = (markdown(rows) + f"\n\nSaved per run: {times[False][0] - times[True][0]:.1f} CPU s "
            f"({times[False][0] / times[True][0]:.1f}x less CPU for a run whose teacher outputs are stored).")
    save("teacher_outputs", text, {"rows": rows})


if __name__ == "__main__":
    main()
