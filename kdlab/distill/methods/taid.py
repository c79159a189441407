"""TAID (Shing, Misaki, Bao, Yokoi & Akiba, "TAID: Temporally Adaptive Interpolated Distillation for
Efficient Knowledge Transfer in Language Models", ICLR 2025).

The student is distilled towards an intermediate distribution that moves from the student itself to
the teacher over training:

    p_t = softmax((1 - t) * stopgrad(z_s) + t * z_t),     L_TAID = KL(p_t || softmax(z_s)).

At ``t = 0`` the target is the student (zero loss); at ``t = 1`` it is Hinton KD at T = 1.

Schedule (Algorithm 1 of the paper / the authors' code), once per training step after the loss:

    t_lin  = t_start + (t_end - t_start) * progress          (progress from ``set_progress``)
    delta  = (J_prev - J) / (J_prev + 1e-15)                  (relative change of the objective)
    m      = beta * m + (1 - beta) * delta                    (momentum)
    t      = min(t_end, max(t_lin, t + step_size * sigmoid(m) * (1 - t)))

``J`` is the (unweighted) TAID KL of the batch; the first step only records ``J``. ``t``, the momentum
and ``J_prev`` are buffers, so checkpoints resume the schedule. The paper's ``alpha`` (the step size of
the adaptive update) is the ``step_size`` parameter here.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.distill.base import CE_WEIGHT, Distiller, TeacherOutput, register_method
from kdlab.errors import ConfigError
from kdlab.registry import Param


def taid_target(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    """The interpolated target ``softmax((1 - t) * z_s.detach() + t * z_t)``."""
    return F.softmax((1.0 - t) * student_logits.detach() + t * teacher_logits, dim=1)


def taid_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    """``KL(p_t || softmax(z_s))`` with ``p_t`` the TAID interpolated target, averaged over the batch."""
    log_target = F.log_softmax((1.0 - t) * student_logits.detach() + t * teacher_logits, dim=1)
    log_s = F.log_softmax(student_logits, dim=1)
    return F.kl_div(log_s, log_target, reduction="batchmean", log_target=True)


def taid_next_t(t: float, momentum: float, loss: float, prev_loss: float, progress: float, t_start: float,
                t_end: float, step_size: float, beta: float) -> tuple[float, float]:
    """One TAID schedule update: returns the new ``(t, momentum)``. ``prev_loss = inf`` leaves both."""
    if math.isinf(prev_loss):
        return t, momentum
    rel = (prev_loss - loss) / (prev_loss + 1e-15)
    momentum = beta * momentum + (1.0 - beta) * rel
    t_lin = t_start + (t_end - t_start) * min(max(progress, 0.0), 1.0)
    adaptive = 0.5 * (1.0 + math.tanh(0.5 * momentum))  # sigmoid(momentum), no overflow for a huge |momentum|
    return min(t_end, max(t_lin, t + step_size * adaptive * (1.0 - t))), momentum


@register_method("taid")
class TAID(Distiller):
    """TAID: ce + kd_weight * KL to a student-teacher interpolation whose weight t grows adaptively."""

    params = {
        "ce_weight": CE_WEIGHT,
        "kd_weight": Param(1.0, "weight of the TAID KL term", float, 0.0, 100.0),
        "t_start": Param(0.4, "interpolation weight t at the start of training", float, 0.0, 1.0),
        "t_end": Param(1.0, "largest interpolation weight t (reached at the end at the latest)",
                       float, 0.0, 1.0),
        "step_size": Param(5e-4, "step size of the adaptive t update (the paper's alpha)", float, 0.0, 1.0),
        "beta": Param(0.99, "momentum of the relative objective change", float, 0.0, 0.9999),
    }

    def __init__(self, teacher: nn.Module | None, student: nn.Module, in_shape: Sequence[int], **params):
        super().__init__(teacher, student, in_shape, **params)
        if self.hp["t_end"] < self.hp["t_start"]:
            raise ConfigError(f"taid: t_end ({self.hp['t_end']}) must be >= t_start ({self.hp['t_start']})")
        self.register_buffer("t", torch.tensor(float(self.hp["t_start"])))
        self.register_buffer("momentum", torch.zeros(()))
        self.register_buffer("prev_loss", torch.tensor(float("inf")))

    @torch.no_grad()
    def update_t(self, loss: float) -> None:
        """Advance the schedule with this step's objective value (called in training mode)."""
        hp = self.hp
        t, m = taid_next_t(float(self.t), float(self.momentum), loss, float(self.prev_loss), self.progress,
                           hp["t_start"], hp["t_end"], hp["step_size"], hp["beta"])
        self.t.fill_(t)
        self.momentum.fill_(m)
        self.prev_loss.fill_(loss)

    def losses(self, logits: torch.Tensor, feats: dict, teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        kl = taid_loss(logits, teacher.logits, float(self.t))
        if self.training:
            self.update_t(float(kl.detach()))
        return {"ce": self.ce(logits, y), "kd": self.hp["kd_weight"] * kl}
