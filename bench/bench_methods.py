"""Method table on mnist5k: ConvNet teacher -> small CNN and MLP students, every registered method,
mean +- std over seeds of the test accuracy at the last epoch, and the best validation accuracy (mean epoch).

Also checks the headline targets: teacher test accuracy >= 97.5% and KD MLP beats the vanilla MLP by
>= 1 point (mean over seeds). Run: python -m bench.bench_methods [--seeds 0 1 2] [--epochs 10]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from bench.common import OUT, markdown, save
from kdlab.distill import METHODS
from kdlab.errors import ConfigError
from kdlab.runs.experiment import run_experiment

TEACHER = {"name": "convnet", "params": {"width": 64, "norm": "batchnorm"}, "optim": {"epochs": 10, "lr": 0.05}}
GRAD_CLIP = 5.0  # without it DKD's beta * T^2 = 128 scaled term kills the MLP student at lr 0.05
STUDENTS = {"mlp": {"name": "mlp", "params": {"width": 256, "depth": 2}},
            "cnn": {"name": "convnet", "params": {"width": 16, "depth": 2, "norm": "batchnorm"}}}


def spec(method: str, student: str, seed: int, epochs: int) -> dict:
    s = STUDENTS[student]
    teacher = TEACHER
    if method == "born_again":  # the teacher is a trained network of the student's own architecture
        teacher = {**s, "optim": {"epochs": epochs, "lr": 0.05}}
    if not METHODS.get(method).uses_teacher and method != "dml":
        teacher = None
    return {"name": f"{method}-{student}-s{seed}", "seed": seed, "data": {"name": "mnist5k"},
            "teacher": teacher, "student": s, "method": {"name": method},
            "optim": {"name": "sgd", "lr": 0.05, "epochs": epochs, "batch_size": 128, "grad_clip": GRAD_CLIP}}


def _read_raw() -> dict:
    """Every raw result written so far, by any part (runs are deterministic: duplicates agree)."""
    raw: dict = {}
    for path in sorted(OUT.glob("methods_raw*.json")):
        raw.update(json.loads(path.read_text()))
    return raw


def fmt(values: list[float]) -> str:
    m = 100 * statistics.mean(values)
    sd = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.2f} ± {sd:.2f}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--methods", nargs="*", default=None)
    p.add_argument("--students", nargs="*", default=list(STUDENTS))
    p.add_argument("--no-table", action="store_true", help="only run (resumable), do not write the table")
    p.add_argument("--part", default="", help="suffix of this process's raw file (to split the work)")
    args = p.parse_args()
    methods = args.methods or METHODS.names()
    OUT.mkdir(exist_ok=True)
    raw: dict = {}
    teacher_acc = None
    for student in args.students:  # one raw file per student: the two halves can run in parallel
        raw_path = OUT / f"methods_raw_{student}{args.part}.json"
        raw.update(_read_raw())
        for method in methods:
            for seed in args.seeds:
                key = f"{method}/{student}/{seed}/{args.epochs}"
                if key in raw:
                    continue
                t0 = time.perf_counter()
                try:
                    r = run_experiment(spec(method, student, seed, args.epochs), log_every=0)
                except ConfigError as e:  # e.g. AT/NST with an MLP student: no spatial maps
                    raw[key] = {"error": str(e).split(".")[0]}
                    print(key, raw[key], flush=True)
                    continue
                raw[key] = {"test_last": r.student["test/acc"],
                            "val_best": r.student["best"]["val/acc"], "val_last": r.student["last"]["val/acc"],
                            "best_epoch": r.student["best"]["epoch"], "agreement": r.student.get("test/agreement"),
                            "teacher_test": r.teacher.get("test/acc"), "time_s": time.perf_counter() - t0}
                if method == "kd":
                    teacher_acc = r.teacher["test/acc"]
                raw_path.write_text(json.dumps({k: v for k, v in raw.items() if f"/{student}/" in k}, indent=1))
                print(key, {k: round(v, 4) if isinstance(v, float) else v for k, v in raw[key].items()}, flush=True)
    if args.no_table:
        return
    raw.update(_read_raw())
    rows = []
    for method in methods:
        row = {"method": method}
        for student in args.students:
            runs = [raw[f"{method}/{student}/{s}/{args.epochs}"] for s in args.seeds]
            if any("error" in r for r in runs):
                row[f"{student}: test acc, last epoch"] = "n/a: " + runs[0].get("error", "failed")[:60]
                row[f"{student}: best val acc (epoch)"] = "n/a"
                row[f"{student}: s/run"] = "n/a"
                continue
            row[f"{student}: test acc, last epoch"] = fmt([r["test_last"] for r in runs])
            epochs = statistics.mean(r["best_epoch"] for r in runs)
            row[f"{student}: best val acc (epoch)"] = f"{fmt([r['val_best'] for r in runs])} ({epochs:.1f})"
            row[f"{student}: s/run"] = statistics.mean(r["time_s"] for r in runs)
        rows.append(row)
    kd = [raw[f"kd/mlp/{s}/{args.epochs}"]["test_last"] for s in args.seeds]
    van = [raw[f"vanilla/mlp/{s}/{args.epochs}"]["test_last"] for s in args.seeds]
    teacher_acc = teacher_acc or raw[f"kd/mlp/{args.seeds[0]}/{args.epochs}"]["teacher_test"]
    gain = 100 * (statistics.mean(kd) - statistics.mean(van))
    head = (f"Teacher ConvNet-3 (width 64, BN, 10 epochs) test accuracy: **{100 * teacher_acc:.2f}%** "
            f"(target >= 97.5)\n\nKD MLP {fmt(kd)} vs vanilla MLP {fmt(van)}: gain **{gain:+.2f} points** "
            f"(mean over seeds {args.seeds}; target >= +1)\n\n")
    text = (head + f"Every method, mnist5k (3,500 train / 500 val / 1,000 test), {args.epochs} student epochs, "
            f"SGD lr 0.05 cosine, batch 128, grad-norm clip {GRAD_CLIP}, default method parameters, "
            f"seeds {args.seeds}; test accuracy in %, "
            f"mean ± std.\n\n" + markdown(rows, "{:.1f}"))
    save("methods", text, {"rows": rows, "teacher_test": teacher_acc, "kd_gain_points": gain})


if __name__ == "__main__":
    main()
