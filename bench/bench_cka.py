"""CKA grid speed and precision: kdlab's streaming ``cka_matrix`` vs the ``torch-cka`` package (PyPI 0.21).

A 10 x 10 layer grid of two MNIST models (ViTs with 3,200- and 4,000-unit flattened token features plus
their logits) on 5,000 MNIST images (mnist5k, all splits), batch 250, the same estimator on both sides
(minibatch linear CKA from the unbiased HSIC_1). Also the floor: the two models' forward passes alone.
Timings are medians of ``--repeats`` runs; peak memory is the largest RSS growth seen during a call.

    OMP_NUM_THREADS=1 nice -n 10 python -m bench.bench_cka [--repeats 3] [--samples 5000]
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import threading
import warnings

import numpy as np
import psutil
import torch

from bench.common import markdown, median_time, save
from kdlab.analysis.cka import cka_matrix
from kdlab.data import load
from kdlab.models import create


class PeakRSS:
    """Largest resident-set growth (MB) of this process while the block runs (sampled every 5 ms)."""

    def __enter__(self) -> PeakRSS:
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.mb = (self.peak - self.base) / 2**20


def models(in_shape):
    torch.manual_seed(0)
    a = create("vit_tiny", 10, in_shape, dim=64, depth=9, heads=4).eval()
    b = create("vit_tiny", 10, in_shape, dim=80, depth=9, heads=4).eval()
    layers = [f"blocks.{i}" for i in range(9)] + ["head"]
    return a, b, layers


def torch_cka_grid(a, b, layers, x, batch):
    from torch.utils.data import DataLoader, TensorDataset
    from torch_cka import CKA

    a, b = copy.deepcopy(a), copy.deepcopy(b)  # torch-cka leaves its hooks on the models
    loader = DataLoader(TensorDataset(x), batch_size=batch, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = CKA(a, b, "A", "B", model1_layers=layers, model2_layers=layers, device="cpu")
        try:
            with torch.no_grad():
                c.compare(loader)
            return c.export()["CKA"].double().numpy(), ""
        except AssertionError as e:  # torch-cka asserts when its HSIC gives NaN
            return None, str(e)


@torch.no_grad()
def trace_formula_grid(a, b, layers, x, batch):
    """torch-cka's algorithm (uncentred features, diagonal-zeroed Grams, the trace form of HSIC_1) in float64."""
    from kdlab.models.taps import FeatureTaps

    xy = np.zeros((len(layers), len(layers)))
    xx, yy = np.zeros(len(layers)), np.zeros(len(layers))

    def hsic(k, l):
        n = len(k)
        one = torch.ones(n, dtype=torch.float64)
        return float((torch.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
                      - 2 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3)))

    with FeatureTaps(a, layers, detach=True) as ta, FeatureTaps(b, layers, detach=True) as tb:
        for i in range(0, len(x), batch):
            a(x[i:i + batch])
            b(x[i:i + batch])
            ka = [f.flatten(1).double() @ f.flatten(1).double().T for f in ta.pop().values()]
            kb = [f.flatten(1).double() @ f.flatten(1).double().T for f in tb.pop().values()]
            for k in ka + kb:
                k.fill_diagonal_(0)
            for p, k in enumerate(ka):
                xx[p] += hsic(k, k)
                for q, l in enumerate(kb):
                    xy[p, q] += hsic(k, l)
            for q, l in enumerate(kb):
                yy[q] += hsic(l, l)
    return xy / np.sqrt(np.outer(xx, yy))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samples", type=int, default=5000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    x = torch.cat([load("mnist5k", split=s).x for s in ("train", "val", "test")])[:args.samples]
    a, b, layers = models(tuple(x.shape[1:]))
    batch = 250

    def forward_only():
        with torch.no_grad():
            for i in range(0, len(x), batch):
                a(x[i:i + batch])
                b(x[i:i + batch])

    grids = {}

    def kdlab(dtype):
        def run():
            grids[dtype] = cka_matrix(a, b, x, layers, layers, batch_size=batch, dtype=dtype)
        return run

    rows, res = [], {}
    for label, fn in [("forward passes only (floor)", forward_only),
                      ("kdlab cka_matrix, float64", kdlab(torch.float64)),
                      ("kdlab cka_matrix, float32 grams (centred)", kdlab(torch.float32)),
                      ("torch-cka 0.21", lambda: res.__setitem__("tc", torch_cka_grid(a, b, layers, x, batch)))]:
        with PeakRSS() as mem:
            t, times = median_time(fn, repeats=args.repeats, warmup=0)
        rows.append({"method": label, "median s": t, "runs": ", ".join(f"{v:.1f}" for v in times),
                     "peak RSS growth MB": mem.mb})
        print(rows[-1], flush=True)
    floor = rows[0]["median s"]
    for r in rows:
        r["x forward time"] = r["median s"] / floor
    tc, err = res["tc"]
    g64 = grids[torch.float64].to_numpy()
    g32 = grids[torch.float32].to_numpy()
    prec = {"float32 vs float64 max |diff|": float(np.abs(g32 - g64).max())}
    if tc is not None:
        fin = np.isfinite(tc)
        d = np.where(fin, np.abs(g64 - tc), 0.0)
        prec.update({"torch-cka finite cells": f"{int(fin.sum())}/{fin.size}",
                     "max |kdlab - torch-cka|, block x block": float(d[:-1, :-1].max()),
                     "max |kdlab - torch-cka|, cells with logits": float(max(d[-1].max(), d[:, -1].max()))})
    else:
        prec["torch-cka"] = f"failed: {err or 'NaN'}"
    n_ref = min(1000, len(x))
    ref = trace_formula_grid(a, b, layers, x[:n_ref], batch)
    sub = cka_matrix(a, b, x[:n_ref], layers, layers, batch_size=batch).to_numpy()
    prec[f"max |kdlab - torch-cka's formula in float64| ({n_ref} samples)"] = float(np.abs(sub - ref).max())
    speedup = rows[3]["median s"] / rows[1]["median s"]
    text = (f"### CKA grid: kdlab vs torch-cka\n\n10 x 10 layers (two untrained ViTs on MNIST, dim 64 / 80, 9 blocks + "
            f"head; flattened token features 3,200 / 4,000 units), {len(x)} mnist5k images, batch {batch}, "
            f"{args.repeats} repeats, 1 thread, nice 10. Same estimator (minibatch linear CKA, unbiased HSIC_1).\n\n"
            + markdown(rows, "{:.3g}") + "\n\nPrecision (kdlab float64 as reference):\n\n" +
            "\n".join(f"- {k}: {v if isinstance(v, str) else f'{v:.2e}'}" for k, v in prec.items()) +
            f"\n\nkdlab (float64) is {speedup:.1f}x faster than torch-cka; its whole grid costs "
            f"{rows[1]['x forward time']:.2f}x (float64) / {rows[2]['x forward time']:.2f}x (float32 grams) the "
            f"forward passes alone (target <= 1.5x: "
            f"{'met' if min(rows[1]['x forward time'], rows[2]['x forward time']) <= 1.5 else 'missed'}).\n")
    save("cka", text, {"rows": rows, "precision": prec, "cpu_count": os.cpu_count(),
                       "finite": bool(tc is not None and math.isfinite(float(np.nanmax(tc))))})


if __name__ == "__main__":
    main()
