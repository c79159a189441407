"""Frequency analysis on mnist5k: band-accuracy curves and Fourier heat maps of a ConvNet teacher, a KD student
and a vanilla student; and the speed of a full 28x28 Fourier heat map on 500 images.

Speed, side by side on the same images and model: kdlab's ``fourier_heatmap`` (each of the 398 unique basis
images once, many perturbed images per forward) against the straightforward loop (all 784 frequencies, one
forward of the image batch per frequency). Timings are medians of ``--repeats`` runs on ``--compare-images``
images; the full 500-image map of the teacher is timed once (it is also the map shown).

    OMP_NUM_THREADS=1 nice -n 10 python -m bench.bench_frequency [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from bench.common import markdown, median_time, save
from kdlab.analysis.fourier_heatmap import basis_image, fourier_heatmap
from kdlab.analysis.frequency import band_curves, feature_spectra
from kdlab.data import load
from kdlab.distill import create_distiller
from kdlab.distill.trainer import TrainConfig, Trainer
from kdlab.models import create
from kdlab.models.inference import predict


def fit(method, student, train, val, teacher=None, epochs=8):
    d = create_distiller(method, teacher, student, train.in_shape)
    Trainer(d, TrainConfig(epochs=epochs, batch_size=64, lr=0.05, log_every=0)).fit(train, val)
    return student.eval()


@torch.no_grad()
def naive_heatmap(model, x, y, eps=4.0, seed=0):
    """The straightforward loop: every (i, j) of the H x W grid, one forward of the whole batch per frequency."""
    n, c, h, w = x.shape
    g = torch.Generator().manual_seed(seed)
    err = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            u = basis_image(h, w, i, j).float()
            sign = (torch.randint(0, 2, (n, c, 1, 1), generator=g) * 2 - 1).float()
            err[i, j] = float((model((x + eps * sign * u).clamp(0, 1)).argmax(1) != y).double().mean())
    return np.fft.fftshift(err)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--compare-images", type=int, default=30)
    ap.add_argument("--eps", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads (default: all cores)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    train, val, test = (load("mnist5k", split=s) for s in ("train", "val", "test"))
    torch.manual_seed(0)
    teacher = fit("vanilla", create("convnet", 10, train.in_shape, width=32), train, val, epochs=6)
    torch.manual_seed(1)
    kd = fit("kd", create("convnet", 10, train.in_shape, width=8, depth=2), train, val, teacher)
    torch.manual_seed(1)
    vanilla = fit("vanilla", create("convnet", 10, train.in_shape, width=8, depth=2), train, val)
    models = {"teacher": teacher, "KD student": kd, "vanilla": vanilla}
    acc = {k: float((predict(m, test).argmax(1) == test.y).double().mean()) for k, m in models.items()}
    train_s = time.perf_counter() - t_start
    print("test acc", acc, f"({train_s:.0f} s)", flush=True)

    cutoffs = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]
    bands = band_curves(models, test.x, test.y, cutoffs)
    spectra = feature_spectra(models, test.x[:256])

    x, y = test.x[:args.images], test.y[:args.images]
    t0 = time.perf_counter()
    maps = {"teacher": fourier_heatmap(teacher, x, y, eps=args.eps)}
    full_s = time.perf_counter() - t0
    load_avg = os.getloadavg()[0]
    print(f"teacher heat map on {args.images} images: {full_s:.1f} s (load {load_avg:.1f})", flush=True)
    for k in ("KD student", "vanilla"):
        maps[k] = fourier_heatmap(models[k], x, y, eps=args.eps)

    xc, yc = test.x[:args.compare_images], test.y[:args.compare_images]
    k_med, k_runs = median_time(lambda: fourier_heatmap(teacher, xc, yc, eps=args.eps), args.repeats, warmup=0)
    b_med, b_runs = median_time(lambda: naive_heatmap(teacher, xc, yc, eps=args.eps), args.repeats, warmup=0)
    speed = [{"implementation": "straightforward loop (784 frequencies, 1 forward each)", "images": len(xc),
              "median s": b_med, "runs": ", ".join(f"{v:.1f}" for v in b_runs)},
             {"implementation": "kdlab fourier_heatmap (398 unique, batched)", "images": len(xc), "median s": k_med,
              "runs": ", ".join(f"{v:.1f}" for v in k_runs)},
             {"implementation": "kdlab fourier_heatmap, full map (1 run)", "images": len(x), "median s": full_s,
              "runs": f"{full_s:.1f}"}]

    band_rows = []
    for f in ("low", "high"):
        for c in cutoffs:
            row = {"filter": f"{f}-pass", "cutoff": c}
            for k in models:
                d = bands[(bands.model == k) & (bands["filter"] == f) & (bands.cutoff == c)]
                row[f"{k} acc"] = float(d.acc.iloc[0])
                if k != "teacher":
                    row[f"{k} agree"] = float(d.agreement.iloc[0])
            band_rows.append(row)
    heat_rows = []
    for k, hm in maps.items():
        centres, prof = hm.band_profile(4)
        heat_rows.append({"model": k, "test acc": acc[k], "clean error (500)": hm.clean_error,
                          "mean error under perturbation": float(hm.error.mean()),
                          **{f"error r~{c:.2f}": float(p) for c, p in zip(centres, prof, strict=True)}})
    spec_rows = []
    for k in models:
        for layer, d in spectra[spectra.model == k].groupby("layer", sort=False):
            spec_rows.append({"model": k, "layer": layer,
                              "energy share radius > 0.53": float(d[d.radius > 0.53].energy.sum())})
    target = "met" if full_s < 120 else "missed"
    text = (
        "### Frequency analysis on mnist5k (images)\n\n"
        f"Teacher ConvNet-3 (width 32, 6 epochs), students ConvNet-2 (width 8, 8 epochs): KD (T=4) and vanilla; "
        f"SGD lr 0.05, batch 64, 3,500 training images. Band curves on the 1,000 test images; Fourier heat maps "
        f"(perturbation L2 norm {args.eps:g} per image, random sign, clipped to [0, 1]) on {args.images} test "
        "images. Radii are fractions of Nyquist.\n\n"
        "Accuracy (and agreement with the teacher) on low-/high-pass filtered test images:\n\n"
        + markdown(band_rows, "{:.3f}") + "\n\nFourier heat maps: mean error rate by radial band of the "
        "perturbing frequency:\n\n" + markdown(heat_rows, "{:.3f}") + "\n\nFeature maps: share of (mean-removed) "
        "spectral power above 0.53 Nyquist per stage:\n\n" + markdown(spec_rows, "{:.3f}") +
        "\n\n#### Fourier heat map speed (28x28, ConvNet-3 width 32)\n\n" + markdown(speed, "{:.1f}") +
        f"\n\nkdlab is {b_med / k_med:.1f}x faster than the straightforward loop. Full map on {args.images} images: "
        f"{full_s:.0f} s with {args.threads} threads (load average {load_avg:.1f} when it finished); "
        f"target < 120 s on 2 cores: {target}.\n")
    save("frequency", text, {"test_acc": acc, "bands": bands.to_dict("records"), "heatmaps": heat_rows,
                             "spectra": spec_rows, "speed": speed, "load_average": load_avg,
                             "total_s": time.perf_counter() - t_start})


if __name__ == "__main__":
    main()
