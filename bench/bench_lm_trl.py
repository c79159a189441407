"""kdlab.text.losses.generalized_jsd against TRL's GKDTrainer.generalized_jsd_loss (the reference GKD loss).

Needs TRL, which is not a kdlab dependency: ``pip install trl`` (checked with trl 1.16.0, where GKDTrainer lives
in ``trl.experimental.gkd``; older releases export it from ``trl``). Random float32 logits of shape [B, L, V]
(vocab 50 and 1000, logit scale up to 20), beta in {0, 0.1, 0.5, 0.9, 1}, temperature in {1, 2}.

Reductions: kdlab returns the per-token mean. TRL's ``reduction="batchmean"`` divides the sum by the batch size
(sequences) when no labels are given, and by the number of unmasked tokens when ``labels`` are given; the bench
passes labels with a few positions set to -100, and gives kdlab the same tokens (flattened, masked), so both
sides are per-token means. The unmasked batchmean is also checked: TRL's value equals kdlab's times L.

Run: python -m bench.bench_lm_trl        (writes bench/results/lm_trl.md and .json)
"""
from __future__ import annotations

import os
import sys
import warnings

import torch

from bench.common import markdown, save
from kdlab.text.losses import generalized_jsd

SHAPES = [(2, 8, 50), (4, 16, 50), (2, 8, 1000), (3, 32, 1000)]
SCALES = [1.0, 5.0, 20.0]
BETAS = [0.0, 0.1, 0.5, 0.9, 1.0]
TEMPERATURES = [1.0, 2.0]
TOL = 1e-5


def trl_loss_fn():
    """TRL's ``GKDTrainer.generalized_jsd_loss`` (a static method), or exit 2 with how to install TRL."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    try:
        import trl
    except ImportError:
        print("TRL is not installed (it is not a kdlab dependency). Install it with:  pip install trl",
              file=sys.stderr)
        sys.exit(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from trl.experimental.gkd import GKDTrainer
        except ImportError:
            from trl import GKDTrainer
    return trl.__version__, GKDTrainer.generalized_jsd_loss


def main() -> None:
    version, trl_jsd = trl_loss_fn()
    torch.manual_seed(0)
    cases = []
    for b, seq, v in SHAPES:
        for scale in SCALES:
            s, t = torch.randn(b, seq, v) * scale, torch.randn(b, seq, v) * scale
            labels = torch.randint(0, v, (b, seq))
            labels[0, :2] = -100  # a few masked (prompt / padding) positions
            labels[-1, -1] = -100
            cases.append((s, t, labels))
    rows, data = [], []
    worst = 0.0
    for beta in BETAS:
        for temperature in TEMPERATURES:
            diff = rel = batch_diff = 0.0
            for s, t, labels in cases:
                mask = labels != -100
                ref = trl_jsd(s, t, labels=labels, beta=beta, temperature=temperature, reduction="batchmean")
                ours = generalized_jsd(s[mask], t[mask], beta=beta, temperature=temperature)
                diff = max(diff, abs(float(ref) - float(ours)))
                rel = max(rel, abs(float(ref) - float(ours)) / max(abs(float(ref)), 1e-12))
                # without labels TRL's batchmean is sum / B = per-token mean * L
                ref_b = trl_jsd(s, t, beta=beta, temperature=temperature, reduction="batchmean")
                ours_b = generalized_jsd(s, t, beta=beta, temperature=temperature) * s.shape[1]
                batch_diff = max(batch_diff, abs(float(ref_b) - float(ours_b)) / max(abs(float(ref_b)), 1e-12))
            worst = max(worst, diff)
            row = {"beta": beta, "temperature": temperature, "cases": len(cases),
                   "max abs diff (per-token mean)": f"{diff:.2e}", "max rel diff": f"{rel:.2e}",
                   "max rel diff (no labels, x L)": f"{batch_diff:.2e}", "ok (<= 1e-5)": "yes" if diff <= TOL else "NO"}
            rows.append(row)
            data.append({"beta": beta, "temperature": temperature, "max_abs_diff": diff, "max_rel_diff": rel,
                         "max_rel_diff_batchmean": batch_diff})
            print(f"beta={beta} T={temperature}: max abs diff {diff:.2e}")
    shapes = ", ".join(f"{b}x{seq}x{v}" for b, seq, v in SHAPES)
    text = (f"`kdlab.text.losses.generalized_jsd` vs TRL {version} `GKDTrainer.generalized_jsd_loss`, float32, "
            f"shapes [B, L, V] {shapes}, logit scales {SCALES} ({len(cases)} cases per row), labels with -100 "
            f"positions (TRL's batchmean then divides by the unmasked tokens: the per-token mean kdlab reports). "
            f"Largest absolute difference: {worst:.2e} (tolerance {TOL:g}).\n\n{markdown(rows)}")
    save("lm_trl", text, {"trl": version, "tolerance": TOL, "rows": data})
    if worst > TOL:
        sys.exit(1)


if __name__ == "__main__":
    main()
