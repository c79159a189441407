"""The One-for-All KD observation on mnist5k: a CNN teacher's features vs a CNN, an MLP and a ViT student
(all trained with KD from it): CKA heatmaps and the mean CKA of matched stages per pair.

    OMP_NUM_THREADS=1 nice -n 10 python -m bench.bench_ofa [--epochs 3]
"""
from __future__ import annotations

import argparse

import torch

from bench.common import OUT, VIT_OPTIM, kd_setup, markdown, save
from kdlab.analysis.cka import cka_matrix, matched_diagonal
from kdlab.distill.evaluate import score
from kdlab.jobs.cka import default_layers
from kdlab.models import create
from kdlab.models.inference import predict

STUDENTS = {"CNN": ("convnet", {"width": 16, "depth": 3}), "MLP": ("mlp", {"width": 256, "depth": 3}),
            "ViT": ("vit_tiny", {"dim": 64, "depth": 3, "heads": 4})}
OPTIM = {"ViT": VIT_OPTIM}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    train, _val, test, teacher, train_kd = kd_setup(args.epochs + 1)
    rows, grids = [], {}
    for label, (name, params) in STUDENTS.items():
        torch.manual_seed(0)
        s = create(name, 10, train.in_shape, **params)
        train_kd(s, args.epochs, **OPTIM.get(label, {}))
        df = cka_matrix(teacher, s, test, default_layers(teacher), default_layers(s), batch_size=250)
        grids[label] = df
        diag = matched_diagonal(df)
        rows.append({"student": label, "test acc": score(predict(s, test), test.y).acc,
                     "mean matched-stage CKA": float(diag.mean()),
                     "mean CKA, stages only": float(diag.iloc[:-1].mean()), "logits CKA": float(diag.iloc[-1])})
        print(rows[-1], flush=True)
    from kdlab.viz.representations import cka_heatmap

    for label, df in grids.items():
        cka_heatmap(df, title=f"CNN teacher vs {label} student").write_html(OUT / f"ofa_{label.lower()}.html",
                                                                          include_plotlyjs="cdn")
    text = (f"### OFA observation: CNN teacher vs CNN / MLP / ViT students (mnist5k)\n\nTeacher ConvNet-3 width 32; "
            f"students trained with KD for {args.epochs} epochs (SGD lr 0.05; the ViT AdamW lr 2e-3); "
            "minibatch linear CKA on the 1,000 test images "
            "(batch 250, flattened features); matched stages aligned at the deepest layer, logits included.\n\n"
            + markdown(rows, "{:.3f}") + "\n\n" + "\n\n".join(
                f"{label}:\n\n" + markdown([{"teacher layer": i, **r} for i, r in df.round(3).iterrows()])
                for label, df in grids.items()) + "\n")
    save("ofa", text, {"rows": rows, "grids": {k: v.to_dict() for k, v in grids.items()}})


if __name__ == "__main__":
    main()
