"""Helpers of the figure tests (imported by name: tests/ has no packages)."""
from __future__ import annotations

import pandas as pd


def make_history(terms=("ce", "kd"), epochs: int = 3, agreement: bool = True) -> list[dict[str, float]]:
    """A trainer-like history (one dict per epoch) whose every value is distinct and known."""
    out = []
    for e in range(1, epochs + 1):
        row: dict[str, float] = {"epoch": e}
        for i, t in enumerate(terms):
            row[f"train/{t}"] = 1.0 / (e + i + 1)
        row["train/loss"] = sum(row[f"train/{t}"] for t in terms)
        row.update({"train/acc": 0.1 * e, "val/acc": 0.1 * e + 0.05, "val/loss": 2.0 / e, "lr": 0.1 / e,
                    "throughput": 1000.0 + e, "epoch_time": 0.5 + e / 100})
        if agreement:
            row["val/agreement"] = 0.2 * e
        out.append(row)
    return out


def to_tidy(history: list[dict[str, float]], with_steps: bool = True) -> pd.DataFrame:
    """The same history as the run store's tidy rows (epoch rows, plus step rows that must be ignored)."""
    rows = []
    for i, h in enumerate(history):
        step = 10 * (i + 1)
        for k, v in h.items():
            if k != "epoch":
                rows.append({"seq": len(rows), "step": step, "epoch": float(h["epoch"]), "kind": "epoch",
                             "key": k, "value": v, "time": 0.0})
        if with_steps:
            rows.append({"seq": len(rows), "step": step - 5, "epoch": h["epoch"] - 0.5, "kind": "step",
                         "key": "train/loss", "value": 99.0, "time": 0.0})
    return pd.DataFrame(rows)
