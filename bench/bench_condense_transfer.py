"""Self-supervised dataset distillation for transfer (KRR-ST) against selection sets, by the transfer protocol.

Source digits (train split), IPC 10: random real, herding, Dataset Quantization and KRR-ST (200 iterations), plus
the "no pre-training" and "full real data" rows. Each set pre-trains a ConvNet-128 (KRR-ST: regression of its
target representations; the others: cross entropy on their labels), which is then linearly probed and fine-tuned on
three targets with 50 labels per class: mnist5k resized to 8x8, digits rotated (severity 0.5) and noisy (0.3).
Mean ± std over seeds 0-2 (each seed distils its own sets, draws its own target labels and initialisations).

    env OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_condense_transfer
"""
from __future__ import annotations

import argparse
import time

import pandas as pd

from bench.common import markdown, mean_std, save
from kdlab.condense import condense, evaluate_transfer, transfer_targets
from kdlab.data import load

SETS = (("random", "random", 0), ("herding", "herding", 0), ("dq", "dq", 0), ("krr_st", "krr_st", 200))
EPOCHS = {"pretrain_epochs": 300, "full_epochs": 30, "finetune_epochs": 30}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--ipc", type=int, default=10)
    args = ap.parse_args()
    train = load("digits", split="train")
    frames, times = [], []
    for seed in map(int, args.seeds.split(",")):
        targets = transfer_targets("digits", seed=seed)
        sets = {}
        for name, method, its in SETS:
            t0 = time.perf_counter()
            sets[name] = condense(train, method=method, ipc=args.ipc, iterations=its, seed=seed)
            times.append({"set": name, "seed": seed, "distill s": time.perf_counter() - t0})
        df = evaluate_transfer(sets, targets, full=train, seed=seed, **EPOCHS)
        frames.append(df.assign(seed=seed))
        print(df, flush=True)
    d = pd.concat(frames, ignore_index=True)
    order = ["no pre-training", *[s for s, _, _ in SETS], "full real data"]
    rows = []
    for name in [n for n in order if n in set(d["set"])]:
        row = {"pre-trained on": name}
        for protocol in ("linear", "finetune"):
            part = d[(d["set"] == name) & (d["protocol"] == protocol)]
            row[f"{protocol}: mean of targets"] = mean_std(list(part.groupby("seed")["acc"].mean()))
            for target in sorted(set(d["target"])):
                row[f"{protocol}: {target}"] = mean_std(list(part[part["target"] == target]["acc"]))
        secs = [t["distill s"] for t in times if t["set"] == name]
        row["distill s"] = f"{sum(secs) / len(secs):.0f}" if secs else "-"
        rows.append(row)
    text = ("### Self-supervised distillation for transfer (digits, IPC 10; `python -m bench.bench_condense_transfer`)"
            "\n\nTest accuracy (%) on each target after pre-training on the set: `linear` = linear probe of the frozen "
            f"features (L-BFGS, float64), `finetune` = all weights; epochs {EPOCHS}. Mean ± std over seeds "
            f"{args.seeds}.\n\n" + markdown(rows))
    save("condense_transfer", text, {"rows": rows, "results": d.to_dict("records"), "times": times})


if __name__ == "__main__":
    main()
