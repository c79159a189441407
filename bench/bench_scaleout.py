"""The same spec through three executors: ``local`` (1 process), ``local`` with 2 DDP ranks on the CPU
(gloo), and ``ray`` (a local Ray cluster). Final student test accuracy (mean ± std over seeds) and wall
time per run (launch to completed, worker start-up included; runs one at a time).

DDP keeps the global batch at the spec's batch size (each rank takes half), so on the CPU its accuracy
follows the single-process run; on a small CPU box the two ranks share the cores and add gloo all-reduces,
so it is not faster: the point here is correctness and overhead, not speed-up.

Run: python -m bench.bench_scaleout [--seeds 2] [--epochs 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import kdlab
from bench.common import markdown, save

SPEC = {"name": "bench-scaleout", "device": "cpu", "data": {"name": "mnist5k"},
        "teacher": {"name": "convnet", "params": {"width": 16, "depth": 2}, "optim": {"epochs": 3, "batch_size": 128}},
        "student": {"name": "mlp", "params": {"width": 64}}, "method": {"name": "kd"},
        "optim": {"epochs": 3, "batch_size": 128}}
MODES = {"local, 1 process": ("local", 1), "local DDP, 2 CPU processes (gloo)": ("local", 2),
         "ray task (local cluster)": ("ray", 1)}


def _stats(xs: list[float], fmt: str) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{fmt.format(statistics.mean(xs))} ± {fmt.format(sd)}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t0
    rows, data = [], {"ray_init_s": ray_start, "runs": []}
    with tempfile.TemporaryDirectory(prefix="kdlab-bench-scaleout-") as root:
        store = kdlab.open_store(root)
        store.max_concurrent = 1
        warm = kdlab.launch({**SPEC, "optim": {"epochs": 1}}, store=store)  # trains and caches the teacher
        assert warm.wait(timeout=900) == "completed", warm.record.error
        for label, (executor, n) in MODES.items():
            accs, walls, trains = [], [], []
            for seed in range(args.seeds):
                spec = {**SPEC, "seed": seed, "optim": {**SPEC["optim"], "epochs": args.epochs},
                        "resources": {"processes": n}}
                t1 = time.perf_counter()
                h = kdlab.launch(spec, executor=executor, store=store, log_every=0)
                assert h.wait(timeout=900) == "completed", (label, h.record.error, h.record.traceback)
                walls.append(time.perf_counter() - t1)
                accs.append(100 * h.record.summary["test/acc"])
                trains.append(h.record.summary["train_time_s"])
                data["runs"].append({"mode": label, "seed": seed, "test_acc": accs[-1], "wall_s": walls[-1],
                                     "train_s": trains[-1]})
            rows.append({"executor": label, "test acc %": _stats(accs, "{:.2f}"),
                         "wall s / run": _stats(walls, "{:.1f}"), "train s / run": _stats(trains, "{:.1f}")})
    ray.shutdown()
    text = (f"Scale-out: mnist5k (3,500 train / 1,000 test), KD from a cached ConvNet-16x2 teacher into an "
            f"MLP-64, {args.epochs} epochs, global batch 128, seeds 0..{args.seeds - 1}, one run at a time.\n"
            f"wall = launch to completed (worker start-up, data, test evaluation included); train = the "
            f"trainer's fit. Ray cluster start-up (once): {ray_start:.1f} s.\n\n{markdown(rows)}")
    save("scaleout", text, data)


if __name__ == "__main__":
    main()
