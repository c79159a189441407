"""Sweeps: a 40-trial search over {kd, dkd, dist, nd} x temperature x weight on mnist5k (ConvNet teacher, MLP
student), unpruned against pruned (successive halving on every seed, the median rule on seed 0) in one run, then
the same sweep through Ray Tune (ASHA), and a sweep whose trial worker is SIGKILLed mid-run.

Targets (issue #23): the pruned sweep's best validation accuracy within 0.3 points of the unpruned sweep's, in at
most 0.5x its wall time; Optuna and Ray Tune both finish, with their best configurations; the killed trial is
retried (or recorded as interrupted) and every other trial is intact.

    python -m bench.bench_sweep [--trials 40] [--repeats 3] [--epochs 20]
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import markdown, mean_std, save

OUT = Path(__file__).resolve().parent / "out" / "sweep"

SPACE = {
    "method.name": ["kd", "dkd", "dist", "nd"],
    "method.params": {
        "kd": {"temperature": {"low": 1.0, "high": 8.0}, "kd_weight": {"low": 0.25, "high": 4.0, "log": True}},
        "dkd": {"temperature": {"low": 1.0, "high": 8.0}, "beta": {"low": 1.0, "high": 16.0, "log": True}},
        "dist": {"tau": {"low": 1.0, "high": 8.0}, "beta": {"low": 0.25, "high": 4.0, "log": True}},
        "nd": {"temperature": {"low": 1.0, "high": 8.0}, "nd_weight": {"low": 0.25, "high": 4.0, "log": True}},
    },
}


def base_spec(epochs: int) -> dict[str, Any]:
    return {"name": "mnist5k-mlp", "device": "cpu", "data": {"name": "mnist5k"}, "teacher": {"name": "convnet"},
            "student": {"name": "mlp"}, "method": {"name": "kd"},
            "optim": {"epochs": epochs, "batch_size": 64, "lr": 0.05}}


def run_sweep(store: Any, epochs: int, trials: int, **options: Any) -> dict[str, Any]:
    import kdlab

    t0 = time.perf_counter()
    h = kdlab.sweep(base_spec(epochs), SPACE, trials=trials, store=store, parallel=2, **options)
    status = h.wait(timeout=3600)
    wall = time.perf_counter() - t0
    r = h.result()
    best = r.best
    return {"status": status, "wall_s": wall, "best": best.value if best else None,
            "best_params": best.params if best else None, "counts": r.counts(), "id": h.id,
            "epochs_trained": sum(len(t.curve) for t in r.trials), "importances": r.importances}


def kill_trial(store: Any, epochs: int) -> dict[str, Any]:
    """An 8-trial unpruned sweep; trial 2's worker gets SIGKILL after its third epoch."""
    import kdlab

    h = kdlab.sweep(base_spec(epochs), SPACE, trials=8, store=store, parallel=2, pruner="none", seed=7)
    victim = None
    deadline = time.monotonic() + 600
    while victim is None and time.monotonic() < deadline:
        r = h.result()
        t = next((t for t in (r.trials if r else []) if t.number == 2), None)
        if t is not None and len(t.curve) >= 3:
            rec = store.get_run(t.run_id)
            if rec.status == "running" and rec.pid:
                os.killpg(rec.pid, signal.SIGKILL)
                victim = t.run_id
        time.sleep(0.05)
    status = h.wait(timeout=1800)
    r = h.result()
    killed = next(t for t in r.trials if t.run_id == victim)
    hist = store.history(victim)
    others = [t for t in r.trials if t.run_id != victim]
    return {"status": status, "victim": victim, "victim_state": killed.state, "victim_attempts": killed.attempts,
            "victim_epochs": list(map(int, hist.index)), "victim_note": killed.note,
            "others_complete": sum(t.state == "complete" for t in others), "others": len(others),
            "events": [m for m in store.logs(victim)["message"] if "killed" in m or "resum" in m][:4]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    os.environ["KDLAB_HOME"] = str(OUT / "store")
    import kdlab

    store = kdlab.open_store(OUT / "store")
    store.max_concurrent = 2
    warm = kdlab.launch(base_spec(1), store=store)  # trains and caches the teacher and its outputs (untimed)
    assert warm.wait(timeout=1800) == "completed", warm.record.error
    rows, runs = [], []
    for seed in range(args.repeats):
        pruners = ("none", "halving", "median") if seed == 0 else ("none", "halving")  # the median rule once
        res = {p: run_sweep(store, args.epochs, args.trials, pruner=p, seed=seed) for p in pruners}
        runs.append(res)
        for p in pruners[1:]:
            r, base = res[p], res["none"]
            rows.append({"seed": seed, "pruner": p, "unpruned best": base["best"], "pruned best": r["best"],
                         "gap (points)": 100 * (base["best"] - r["best"]), "unpruned s": base["wall_s"],
                         "pruned s": r["wall_s"], "time ratio": r["wall_s"] / base["wall_s"],
                         "pruned trials": r["counts"]["pruned"], "epochs trained": r["epochs_trained"],
                         "unpruned epochs": base["epochs_trained"]})
        print(markdown(rows[-len(pruners) + 1:]), flush=True)
    summary = []
    for p in ("halving", "median"):
        mine = [r for r in rows if r["pruner"] == p]
        summary.append({"pruner": p, "gap (points)": mean_std([r["gap (points)"] for r in mine], scale=1.0, digits=2),
                        "time ratio (median)": f"{statistics.median(r['time ratio'] for r in mine):.2f}",
                        "met (gap <= 0.3 and ratio <= 0.5)": sum(r["gap (points)"] <= 0.3 and r["time ratio"] <= 0.5
                                                                 for r in mine)})
    ray = None if args.skip_ray else run_sweep(store, args.epochs, args.trials, pruner="halving", seed=0,
                                                executor="ray")
    killed = kill_trial(store, min(args.epochs, 12))
    text = (f"{args.trials} trials, {args.epochs} epochs each, 2 trials at once, seeds 0..{args.repeats - 1}\n\n"
            + markdown(rows) + "\n\n" + markdown(summary))
    if ray is not None:
        o = runs[0]["halving"]
        text += ("\n\nSame sweep (seed 0, successive halving) through Optuna and Ray Tune (ASHA):\n\n" + markdown([
            {"engine": "optuna", "status": o["status"], "wall s": o["wall_s"], "best": o["best"],
             "pruned": o["counts"]["pruned"], "best config": str(o["best_params"])},
            {"engine": "ray tune", "status": ray["status"], "wall s": ray["wall_s"], "best": ray["best"],
             "pruned": ray["counts"]["pruned"], "best config": str(ray["best_params"])}]))
    text += ("\n\nSIGKILL of trial 2's worker after its third epoch (8-trial sweep): " + str(killed))
    save("sweep", text, {"rows": rows, "summary": summary, "runs": runs, "ray": ray, "kill": killed})


if __name__ == "__main__":
    main()
