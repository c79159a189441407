"""How long ``kdlab.launch`` takes to return, in a fresh temporary store.

- ``spawn``: a slot is free, so launch validates the spec, records the run, claims it and starts the
  detached worker process (the worker is cancelled afterwards, outside the timing).
- ``queued``: the queue is paused (``max_concurrent = 0``), so launch only validates and records.
- ``status``: one ``RunHandle.status`` read (a refresh: liveness check plus queue promotion).
- ``worker start``: from launch to the worker's first log line (Python + torch + kdlab import in the worker).

Run: python -m bench.bench_launch [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import kdlab
from bench.common import machine

SPEC = {"name": "bench-launch", "device": "cpu", "data": {"name": "mnist5k", "params": {"n_train": 300}},
        "teacher": {"name": "mlp", "params": {"width": 32}, "optim": {"epochs": 1}},
        "student": {"name": "mlp", "params": {"width": 32}}, "optim": {"epochs": 2, "batch_size": 64}}


def _ms(xs: list[float]) -> str:
    return f"median {1e3 * statistics.median(xs):7.1f} ms  (min {1e3 * min(xs):.1f}, max {1e3 * max(xs):.1f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="kdlab-bench-launch-") as root:
        store = kdlab.open_store(root)
        store.max_concurrent = 1
        kdlab.launch(SPEC, store=store).cancel()  # warm-up: first-use imports (psutil, yaml, ...)
        spawn, status, start = [], [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            h = kdlab.launch(SPEC, store=store)
            spawn.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            assert h.status == "running"
            status.append(time.perf_counter() - t1)
            while not any(m.startswith("worker pid") for m in h.logs()["message"]):
                time.sleep(0.01)
            start.append(time.perf_counter() - t0)
            h.cancel()
        store.max_concurrent = 0
        queued = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            h = kdlab.launch(SPEC, store=store)
            queued.append(time.perf_counter() - t0)
            assert h.status == "queued"
            h.cancel()
    print(f"Machine: {machine()}")
    print(f"kdlab.launch, {args.repeats} repeats each (fresh store in a temp folder)")
    print(f"  spawn (slot free, worker started): {_ms(spawn)}")
    print(f"  queued (queue paused):             {_ms(queued)}")
    print(f"  RunHandle.status read:             {_ms(status)}")
    print(f"  launch -> worker running:          {_ms(start)}")


if __name__ == "__main__":
    main()
