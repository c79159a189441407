"""DDK's domain mixture (Liu et al., "DDK: Distilling Domain Knowledge for Efficient Large Language Models",
NeurIPS 2024): sample more from the domains where the student trails the teacher most, updated smoothly.

Every ``every`` steps the student's and teacher's validation loss per domain give the discrepancy
``psi_i = r_i * exp(l_S,i / l_T,i)``; the new mixture is ``r = alpha * psi / sum(psi) + (1 - alpha) / N`` (the
paper's factor-smooth update: a share ``1 - alpha`` stays uniform so no domain is starved, and ``r_i`` carries
the previous mixture forward). kdlab measures the losses in bits per byte on the validation blocks (same ratio
as the paper's per-token losses when both models share a tokenizer).
"""
from __future__ import annotations

import torch


class DDKMixture:
    """Sampling weights over ``n`` domains, starting uniform (domains without blocks keep weight 0)."""

    def __init__(self, available: torch.Tensor, alpha: float = 0.5):
        self.available = available.bool()
        self.alpha = float(alpha)
        self.weights = self.available.double() / self.available.sum()
        self.history: list[list[float]] = [self.weights.tolist()]

    def update(self, student_loss: torch.Tensor, teacher_loss: torch.Tensor) -> torch.Tensor:
        """The new mixture from per-domain validation losses (NaN where a domain has no validation text)."""
        ratio = torch.as_tensor(student_loss, dtype=torch.float64) / torch.as_tensor(teacher_loss,
                                                                                   dtype=torch.float64)
        known = torch.isfinite(ratio) & self.available
        if known.any():  # a domain without validation text takes the mean factor
            ratio = torch.where(known, ratio, ratio[known].mean())
            shifted = torch.where(self.available, ratio - ratio[self.available].max(), torch.zeros_like(ratio))
            psi = self.weights * torch.exp(shifted)  # shifted: no overflow; domains without blocks stay at 0
        else:
            psi = self.weights.clone()
        n = int(self.available.sum())
        new = self.alpha * psi / psi.sum() + (1 - self.alpha) / n
        self.weights = torch.where(self.available, new, torch.zeros_like(new))
        self.weights = self.weights / self.weights.sum()
        self.history.append(self.weights.tolist())
        return self.weights

    def state(self) -> dict:
        return {"weights": self.weights.tolist(), "history": self.history}

    def load_state(self, state: dict) -> None:
        self.weights = torch.tensor(state["weights"], dtype=torch.float64)
        self.history = [list(h) for h in state["history"]]
