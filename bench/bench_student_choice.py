"""Training-free student choice vs accuracy after KD: Kendall tau between the ranking ``rank_students`` gives
before training and the test accuracy each candidate reaches after KD from a CNN teacher on mnist5k.

    OMP_NUM_THREADS=1 nice -n 10 python -m bench.bench_student_choice [--epochs 3] [--teacher-epochs 4]
"""
from __future__ import annotations

import argparse

import torch
from scipy.stats import kendalltau

from bench.common import VIT_OPTIM, kd_setup, markdown, save
from kdlab.analysis.student_choice import rank_students
from kdlab.distill.evaluate import score
from kdlab.models import create
from kdlab.models.inference import predict

CANDIDATES = {
    "convnet-w32-d3": {"name": "convnet", "params": {"width": 32, "depth": 3}},
    "convnet-w16-d2": {"name": "convnet", "params": {"width": 16, "depth": 2}},
    "convnet-w8-d1": {"name": "convnet", "params": {"width": 8, "depth": 1}},
    "mlp-w256-d2": {"name": "mlp", "params": {"width": 256, "depth": 2}},
    "mlp-w32-d1": {"name": "mlp", "params": {"width": 32, "depth": 1}},
    "vit-d64-x2": {"name": "vit_tiny", "params": {"dim": 64, "depth": 2, "heads": 4}},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--teacher-epochs", type=int, default=4)
    args = ap.parse_args()
    train, val, test, teacher, train_kd = kd_setup(args.teacher_epochs)
    t_acc = score(predict(teacher, test), test.y).acc
    tables = {m: rank_students(teacher, CANDIDATES, val, n_samples=128, metric=m) for m in ("relation", "cka")}
    acc = {}
    for label, c in CANDIDATES.items():
        torch.manual_seed(0)
        student = create(c["name"], 10, train.in_shape, **c["params"])
        optim = VIT_OPTIM if c["name"] == "vit_tiny" else {}
        train_kd(student, args.epochs, **optim)
        acc[label] = score(predict(student, test), test.y).acc
        print(label, acc[label], flush=True)
    rows, taus = [], {}
    for m, df in tables.items():
        sign = -1 if m == "relation" else 1  # a lower relation distance predicts a better student
        tau = kendalltau([sign * v for v in df[m]], [acc[c] for c in df["candidate"]])
        taus[m] = (float(tau.statistic), float(tau.pvalue))
    base = tables["relation"].set_index("candidate")
    for c in CANDIDATES:
        rows.append({"candidate": c, "params": int(base.loc[c, "params"]),
                     "relation (lower better)": base.loc[c, "relation"],
                     "rank by relation": int(base.loc[c, "rank"]),
                     "cka at init": tables["cka"].set_index("candidate").loc[c, "cka"],
                     "test acc after KD": acc[c]})
    text = (f"### Training-free student choice (DisWOT-style) vs accuracy after KD\n\nTeacher: ConvNet-3 width 32, "
            f"{args.teacher_epochs} epochs (test acc {t_acc:.3f}); {len(CANDIDATES)} students trained with KD "
            f"(T=4) for {args.epochs} epochs (SGD lr 0.05; the ViT AdamW lr 2e-3) on mnist5k (3,500 train), "
            "scored before training on 128 val images, "
            "3 random inits each.\n\n" + markdown(rows, "{:.4g}") + "\n\n" +
            "\n".join(f"- Kendall tau ({m} score vs accuracy): {t:.3f} (p = {p:.3f})" for m, (t, p) in taus.items())
            + "\n")
    save("student_choice", text, {"rows": rows, "kendall_tau": taus, "teacher_acc": t_acc})


if __name__ == "__main__":
    main()
