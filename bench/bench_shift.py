"""The shift benchmark on CPU: 8 few-label targets built from scikit-learn's digits by shifts, combinations of
shifts, a label subset, a relabelling and another size (``kdlab.shift.targets``), 5 labels per class, and the wide
15-source zoo (``WIDE_SOURCES``). Per target and averaged, mean ± std over seeds: scratch, fine-tune, FixMatch,
uniform multi-teacher, DistillNearest, DistillWeighted; each metric's Kendall tau against single-source accuracy
(the source's teacher on the target test, every seed; and on seed 0 also the student distilled from each source
alone); the spread of single-source accuracies; the time to rank with features once vs per metric.
Run: nice -n 10 env OMP_NUM_THREADS=1 python -m bench.bench_shift [--seeds 0 1 2] [--scale 1] [--targets ...]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import markdown, mean_std, median_time, save
from kdlab.shift.benchmark import kendall_taus, study_benchmark
from kdlab.shift.targets import BENCHMARK_TARGETS, benchmark_target, benchmark_targets, list_targets
from kdlab.transfer import METHODS, METRICS, WIDE_SOURCES, SourceZoo, rank_sources, run_method
from kdlab.transfer.harness import fit_teachers
from kdlab.transfer.selection import score_features, source_features

CACHE = Path(__file__).resolve().parent / "out"
NAMES = {"scratch": "scratch", "finetune": "fine-tune best", "fixmatch": "FixMatch", "uniform": "uniform",
         "nearest": "DistillNearest", "weighted": "DistillWeighted"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--scale", type=float, default=1.0, help="x 20 student epochs")
    ap.add_argument("--labels", type=int, default=5)
    ap.add_argument("--metric", default="linear_probe")
    ap.add_argument("--temperature", type=float, default=0.5)
    ap.add_argument("--targets", nargs="+", default=[d.name for d in BENCHMARK_TARGETS])
    ap.add_argument("--name", default="shift_benchmark", help="results file name")
    args = ap.parse_args()
    defs = benchmark_targets(args.targets)
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    zoo = SourceZoo(sources=WIDE_SOURCES).build(progress=lambda i, n, m: print(f"[zoo {i}/{n}] {m}", flush=True))

    runs = []
    for seed in args.seeds:  # each target's study is kept under bench/out, so a stopped bench resumes by target
        parts = []
        for name in args.targets:
            setting = {k: v for k, v in vars(args).items() if k not in ("seeds", "name", "targets")} | {
                "seed": seed, "target": name}
            cached = CACHE / f"shift_benchmark_{seed}_{name}.json"
            old = json.loads(cached.read_text()) if cached.is_file() else {}
            if old.get("setting") != setting:
                old = {"setting": setting, "study": study_benchmark(
                    zoo, seed, args.scale, lambda i, n, m, s=seed: print(f"seed {s} [{i}/{n}] {m}", flush=True),
                    labels_per_class=args.labels, metric=args.metric, temperature=args.temperature,
                    targets=[name])}
                CACHE.mkdir(exist_ok=True)
                cached.write_text(json.dumps(old))
            parts.append(old["study"])
        runs.append({**{k: v for k, v in parts[0].items() if k not in ("summary", "table")},
                     "targets": [p["targets"][0] for p in parts]})
        print(seed, "done", flush=True)

    # seed 0: the student distilled from each source alone, the realised value the paper correlates with
    first = runs[0]
    realised_taus, realised = {}, {}
    for d in defs:
        target = benchmark_target(d, args.labels, args.seeds[0])
        feats = source_features(zoo, target.labelled)
        scores = rank_sources(zoo, target.labelled, features=feats)
        cached = CACHE / f"shift_benchmark_single_{args.seeds[0]}_{d.name}.json"
        setting = {"scale": args.scale, "labels": args.labels, "sources": zoo.names()}
        old = json.loads(cached.read_text()) if cached.is_file() else {}
        if old.get("setting") != setting:
            teachers = fit_teachers(zoo, target, features=feats)
            old = {"setting": setting, "acc": {
                n: run_method(f"single:{n}", zoo, target, scores, epochs=first["epochs"], seed=args.seeds[0],
                              teachers=teachers)["test_acc"] for n in zoo.names()}}
            cached.write_text(json.dumps(old))
        acc = old["acc"]
        realised[d.name], realised_taus[d.name] = acc, kendall_taus(scores, acc)
        print("realised", d.name, {k: round(v, 2) for k, v in realised_taus[d.name].items()}, flush=True)

    # speed: ranking one target, features once (every metric reuses them) vs every metric extracting its own
    target0 = benchmark_target(defs[0], args.labels, 0)
    pool = target0.unlabelled.subset(np.arange(min(300, len(target0.unlabelled))))
    t_once, _ = median_time(lambda: rank_sources(zoo, pool), repeats=3, warmup=0)
    t_each, _ = median_time(lambda: [score_features(source_features(zoo, pool), pool.y.numpy(), [m])
                                     for m in METRICS], repeats=1, warmup=0)

    tnames = [d.name for d in defs]
    per = {t: {m: [r["targets"][i]["methods"][m] for r in runs] for m in METHODS} for i, t in enumerate(tnames)}
    avg = {m: [statistics.mean(r["targets"][i]["methods"][m] for i in range(len(tnames))) for r in runs]
           for m in METHODS}
    table = [{"target": t, **{NAMES[m]: mean_std(per[t][m]) for m in METHODS}} for t in tnames]
    table.append({"target": f"**mean of {len(tnames)}**", **{NAMES[m]: mean_std(avg[m]) for m in METHODS}})
    diff = {b: [w - x for w, x in zip(avg["weighted"], avg[b], strict=True)] for b in ("nearest", "fixmatch")}
    spread = [{"target": t, "single-source acc min–max % (seed 0)":
               f"{100 * min(first['targets'][i]['single'].values()):.1f}–"
               f"{100 * max(first['targets'][i]['single'].values()):.1f}",
               "spread (points, mean over seeds)":
                   round(100 * statistics.mean(r["targets"][i]["spread"] for r in runs), 1),
               "best source (seed 0)": max(first["targets"][i]["single"], key=first["targets"][i]["single"].get),
               f"{args.metric} picks (seed 0)": (first["targets"][i]["picked"].get("nearest") or ["-"])[0]}
              for i, t in enumerate(tnames)]
    taus = [{"metric": m,
             "tau vs teacher acc (mean over targets, mean ± std over seeds)":
                 mean_std([float(np.nanmean([t["taus"][m] for t in r["targets"]])) for r in runs], 1.0, 2),
             "tau vs distilled-student acc (seed 0, mean over targets)":
                 round(float(np.nanmean([realised_taus[t][m] for t in tnames])), 3)} for m in METRICS]
    spread_ok = sum(r["spread"] >= 0.03 for r in first["targets"])
    checks = [(f"spread of single-source accuracy >= 3 points on most targets ({spread_ok}/{len(tnames)} on seed 0)",
               spread_ok > len(tnames) / 2),
              (f"DistillWeighted > DistillNearest on average ({mean_std(diff['nearest'])} points)",
               statistics.mean(diff["nearest"]) > 0),
              (f"DistillWeighted > FixMatch on average ({mean_std(diff['fixmatch'])} points)",
               statistics.mean(diff["fixmatch"]) > 0)]
    wall = time.perf_counter() - t_start
    text = "\n\n".join([
        "### Distillation under shift: the 8-target benchmark",
        f"Zoo: {len(zoo)} sources (`WIDE_SOURCES`: ConvNet-3 width 16, {zoo.epochs} epochs on mnist5k under a shift, "
        "relabelling, label subset or with 100 images only). Targets: scikit-learn digits at 28 px, "
        f"{args.labels} labels per class, the rest of the training split unlabelled. Student: ConvNet-3 width 8; "
        f"every method {runs[0]['epochs']} epochs over the labelled images, batch 16, SGD lr 0.05 cosine, unlabelled "
        f"ratio 4; ranking metric `{args.metric}`, DistillWeighted's weights softmax(zscore(score) / "
        f"{args.temperature:g}); seeds {args.seeds} (the seed also picks the labelled images).",
        markdown([r for r in list_targets().to_dict("records") if r["target"] in tnames]),
        "Test accuracy %, mean ± std over seeds:", markdown(table),
        "Single-source accuracies: how much the choice of source matters per target:", markdown(spread),
        "Kendall tau of each metric's ranking of the sources against single-source accuracy:", markdown(taus),
        f"Speed (target `{tnames[0]}`, {len(pool)} images, {len(zoo)} sources): ranking with all {len(METRICS)} "
        f"metrics from features extracted once {t_once:.2f} s vs {t_each:.2f} s when each metric extracts its own.",
        "Checks: " + "; ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in checks),
        f"Whole bench: {wall:.0f} s ({wall / 60:.1f} min)."])
    save(args.name, text, {"runs": runs, "realised": realised, "realised_taus": realised_taus,
                                   "rank_once_s": t_once, "rank_each_s": t_each, "checks": dict(checks),
                                   "args": vars(args), "wall_s": wall})


if __name__ == "__main__":
    main()
