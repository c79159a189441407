"""CKA grid speed and precision: kdlab's streaming ``cka_matrix`` vs the ``torch-cka`` package (PyPI 0.21) and the
forward passes alone, on two problems that weigh the Gram work differently.

- ``cnn`` (cheap forward passes): two small CNNs (widths 16 and 20; six 3x3 convs, three dense layers, logits;
  flattened features of 10 to 3,920 units), trained for three epochs on mnist5k, 10 x 10 layers, 2 threads. The
  Gram products (N^2 D per layer per batch) cost about as much as the convolutions here.
- ``vit`` (costly forward passes): two untrained ViTs (dim 64 / 80, 9 blocks + head; 3,200 / 4,000 units), 1 thread.

Both on 5,000 mnist5k images, batch 250, the same estimator on every side (minibatch linear CKA from the unbiased
HSIC_1). Methods run round-robin (a busy moment hits all of them), ``--repeats`` rounds, medians; peak memory is
the largest RSS growth seen during a method's calls. ``--before REV`` adds kdlab's ``cka_matrix`` as it was at a
git revision (the baseline of a change), side by side in the same run.

    nice -n 10 python -m bench.bench_cka [--problem cnn|vit|both] [--repeats 3] [--before 039d700] [--threads 1]
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import psutil
import torch
from torch import nn

from bench.common import machine, markdown, save
from kdlab.analysis.cka import cka_matrix
from kdlab.data import load
from kdlab.models import create

ROOT = Path(__file__).resolve().parents[1]


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


def vits(in_shape):
    torch.manual_seed(0)
    a = create("vit_tiny", 10, in_shape, dim=64, depth=9, heads=4).eval()
    b = create("vit_tiny", 10, in_shape, dim=80, depth=9, heads=4).eval()
    layers = [f"blocks.{i}" for i in range(9)] + ["head"]
    return a, b, layers


def small_cnn(width: int) -> nn.Sequential:
    """Ten tapped layers: six 3x3 conv + ReLU (stride 2 at the first, third and fifth), three dense + ReLU, logits."""
    def conv(i: int, o: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1), nn.ReLU())

    w = width
    return nn.Sequential(conv(1, w, 2), conv(w, w, 1), conv(w, 2 * w, 2), conv(2 * w, 2 * w, 1),
                         conv(2 * w, 4 * w, 2), conv(4 * w, 4 * w, 1), nn.Flatten(),
                         *[nn.Sequential(nn.Linear(i, o), nn.ReLU())
                           for i, o in ((64 * w, 256), (256, 128), (128, 64))],
                         nn.Linear(64, 10))


def cnns(_in_shape):
    """The two CNNs, trained for three epochs (Adam) on mnist5k's training split so their features are not random."""
    train = load("mnist5k", split="train")
    out = []
    for seed, width in ((0, 16), (1, 20)):
        torch.manual_seed(seed)
        net = small_cnn(width)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        for _ in range(3):
            for i in torch.randperm(len(train.x)).split(64):
                opt.zero_grad()
                nn.functional.cross_entropy(net(train.x[i]), train.y[i]).backward()
                opt.step()
        out.append(net.eval())
    return out[0], out[1], ["0", "1", "2", "3", "4", "5", "7", "8", "9", "10"]


PROBLEMS = {
    "cnn": {"models": cnns, "threads": 2, "what": "two small CNNs trained three epochs (widths 16 / 20; 6 conv + 3 "
            "dense + logits; flattened features of 10 to 3,136 / 3,920 units)"},
    "vit": {"models": vits, "threads": 1, "what": "two untrained ViTs (dim 64 / 80, 9 blocks + head; flattened token "
            "features 3,200 / 4,000 units)"},
}


def cka_at(rev: str):
    """``kdlab.analysis.cka.cka_matrix`` as it was at git revision ``rev`` (loaded from ``git show``)."""
    src = subprocess.run(["git", "show", f"{rev}:kdlab/analysis/cka.py"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / f"cka_{rev}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"cka_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cka_matrix


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


def run_problem(name: str, repeats: int, samples: int, before: str | None,
                threads: int | None = None) -> tuple[str, dict]:
    prob = {**PROBLEMS[name], **({"threads": threads} if threads else {})}
    load_before = os.getloadavg()
    torch.set_num_threads(prob["threads"])
    x = torch.cat([load("mnist5k", split=s).x for s in ("train", "val", "test")])[:samples]
    a, b, layers = prob["models"](tuple(x.shape[1:]))
    batch = 250

    def forward_only():
        with torch.no_grad():
            for i in range(0, len(x), batch):
                a(x[i:i + batch])
                b(x[i:i + batch])

    grids, res = {}, {}

    def kdlab(label, fn=cka_matrix, **kw):
        def run():
            grids[label] = fn(a, b, x, layers, layers, batch_size=batch, **kw).to_numpy()
        return run

    methods = [("forward passes only (floor)", forward_only),
               ("kdlab cka_matrix, float64", kdlab("f64", dtype=torch.float64)),
               ("kdlab cka_matrix, default (float32 products, float64 sums)", kdlab("default")),
               ("torch-cka 0.21", lambda: res.__setitem__("tc", torch_cka_grid(a, b, layers, x, batch)))]
    if before:
        methods.insert(3, (f"kdlab cka_matrix before ({before}), float64", kdlab("before", cka_at(before))))
    times = {label: [] for label, _ in methods}
    peak = dict.fromkeys(times, 0.0)
    for _ in range(repeats):  # round-robin
        for label, fn in methods:
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - t0)
            peak[label] = max(peak[label], mem.mb)
            print(name, label, f"{times[label][-1]:.2f} s", flush=True)
    floor = float(np.median(times[methods[0][0]]))
    rows = [{"method": label, "median s": float(np.median(t)), "runs": ", ".join(f"{v:.2f}" for v in t),
             "peak RSS growth MB": peak[label], "x forward time": float(np.median(t)) / floor}
            for label, t in times.items()]
    g64 = grids["f64"]
    prec = {"default vs float64 max |diff|": float(np.abs(grids["default"] - g64).max())}
    if before:
        prec[f"float64 vs before ({before}) max |diff|"] = float(np.abs(grids["before"] - g64).max())
    tc, err = res["tc"]
    if tc is not None:
        fin = np.isfinite(tc)
        d = np.where(fin, np.abs(g64 - tc), 0.0)
        prec.update({"torch-cka finite cells": f"{int(fin.sum())}/{fin.size}",
                     "max |kdlab - torch-cka|, finite block x block cells": float(d[:-1, :-1].max()),
                     "max |kdlab - torch-cka|, finite cells with logits": float(max(d[-1].max(), d[:, -1].max()))})
    else:
        prec["torch-cka"] = f"failed: {err or 'NaN'}"
    n_ref = min(1000, len(x))
    ref = trace_formula_grid(a, b, layers, x[:n_ref], batch)
    sub = cka_matrix(a, b, x[:n_ref], layers, layers, batch_size=batch, dtype=torch.float64).to_numpy()
    prec[f"max |kdlab float64 - torch-cka's formula in float64| ({n_ref} samples)"] = float(np.abs(sub - ref).max())
    by = {r["method"]: r["x forward time"] for r in rows}
    default = by["kdlab cka_matrix, default (float32 products, float64 sums)"]
    target = 2.0 if name == "cnn" else 1.5
    text = (f"#### {name}, {prob['threads']} thread(s): {prob['what']}\n\n{machine()}; {len(x)} mnist5k images, "
            f"batch {batch}, {prob['threads']} thread(s), {repeats} rounds (methods round-robin), nice 10; load "
            f"average (1 min) {load_before[0]:.2f} at "
            f"the start, {os.getloadavg()[0]:.2f} at the end.\n\n" + markdown(rows, "{:.3g}")
            + "\n\nPrecision (kdlab float64 as reference):\n\n"
            + "\n".join(f"- {k}: {v if isinstance(v, str) else f'{v:.2e}'}" for k, v in prec.items())
            + f"\n\nThe default grid costs {default:.2f}x the forward passes (target <= {target}x: "
            f"{'met' if default <= target else 'missed'}); float64 {by['kdlab cka_matrix, float64']:.2f}x, torch-cka "
            f"{by['torch-cka 0.21']:.2f}x.\n")
    return text, {"rows": rows, "precision": prec, "times": times}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problem", choices=[*PROBLEMS, "both"], default="both")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--before", default=None, help="a git revision whose cka_matrix runs beside today's")
    ap.add_argument("--threads", type=int, default=None, help="torch threads instead of the problem's own")
    args = ap.parse_args()
    names = list(PROBLEMS) if args.problem == "both" else [args.problem]
    texts, data = [], {}
    for name in names:
        text, data[name] = run_problem(name, args.repeats, args.samples, args.before, args.threads)
        texts.append(text)
    suffix = f"_{args.threads}t" if args.threads else ""
    save(("cka" if args.problem == "both" else f"cka_{args.problem}") + suffix, "\n".join(texts), data)


if __name__ == "__main__":
    main()
