"""Progressive distillation (Salimans & Ho 2022): halve the sampling steps round after round.

Each round trains the student to take in ONE DDIM step what the previous round's model (the teacher in round 1)
does in TWO: from ``x_t`` at a point of the student's trailing grid, the previous model steps to the midpoint and
on to the next grid point ``x_s``; the student's target is the clean sample ``x~`` whose single DDIM step from
``x_t`` lands exactly on ``x_s``, ``x~ = (x_s - (s_s/s_t) x_t) / (a_s - (s_s/s_t) a_t)``. The loss is the x0-space
MSE weighted by the paper's "truncated SNR" ``max(SNR, 1)`` or "SNR+1" (the v-MSE). Rounds go from ``start_steps``
down to ``target_steps``, each of ``total_steps / rounds`` updates; the student then becomes the next round's
teacher. Simplification: the student keeps its optimiser state across rounds (the paper restarts it) and the step
budget is split evenly between rounds; with guidance the first round distils the guided teacher.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from kdlab.diffusion.methods.base import DIFFUSION_METHODS, DiffusionMethod
from kdlab.diffusion.schedule import student_timesteps
from kdlab.errors import ConfigError
from kdlab.registry import Param

DEFAULT_ROUND_STEPS = 200  # updates per round when neither round_steps nor total_steps is given


@DIFFUSION_METHODS.register("progressive")
class ProgressiveDistillation(DiffusionMethod):
    """Progressive distillation: each round, one student DDIM step matches two of the previous model."""

    params = {
        "start_steps": Param(64, "teacher DDIM steps the first round distils (halved every round)", int, 2, 1000),
        "target_steps": Param(1, "sampling steps of the final student (start_steps / 2^rounds)", int, 1, 500),
        "round_steps": Param(0, "updates per round (0: total_steps / rounds, or 200 without total_steps)", int, 0,
                             1_000_000),
        "weighting": Param("snr_trunc", "x0-MSE weight: max(SNR, 1) ('truncated SNR') or SNR + 1 (the v-MSE)",
                           str, choices=("snr_trunc", "snr_plus_one")),
    }
    cite = "Salimans & Ho 2022, Progressive Distillation for Fast Sampling of Diffusion Models (ICLR)"
    simplification = ("Optimiser state is kept across rounds (the paper restarts it) and the update budget is "
                      "split evenly between rounds; with guidance, round 1 distils the guided teacher.")
    kind = "ddim"

    def setup(self) -> None:
        start, target = self.hp["start_steps"], self.hp["target_steps"]
        ratio = start / target
        if start <= target or ratio != 2 ** round(math.log2(ratio)):
            raise ConfigError.at("method_params.start_steps", f"start_steps ({start}) must be target_steps "
                                 f"({target}) times a power of two (2, 4, 8, ...)")
        self.rounds = round(math.log2(ratio))
        per = self.hp["round_steps"] or (self.total_steps // self.rounds if self.total_steps else DEFAULT_ROUND_STEPS)
        self.round_steps = max(1, int(per))
        self.previous = self.nets["previous"] = copy.deepcopy(self.student).eval().requires_grad_(False)

    @property
    def current_round(self) -> int:
        """The (0-based) round of the last update (0 before any)."""
        return self.round_of(max(self.step - 1, 0))

    def round_of(self, step: int) -> int:
        """The (0-based) round that update number ``step`` (0-based) belongs to."""
        return min(step // self.round_steps, self.rounds - 1)

    def round_schedule(self) -> list[tuple[int, int]]:
        """(teacher steps, student steps) of every round: [(64, 32), (32, 16), ..., (2, 1)]."""
        start = self.hp["start_steps"]
        return [(start >> r, start >> (r + 1)) for r in range(self.rounds)]

    def previous_v(self, x: Tensor, t: Tensor, y: Tensor | None, r: int) -> Tensor:
        """The previous round's model: the (guided) teacher in round 0, the frozen last-round student after."""
        if r == 0:
            return self.teacher_v(x, t, y)
        with torch.no_grad():
            return self.previous(x, t, y)

    def train_step(self, x0: Tensor | None, y: Tensor | None) -> dict[str, float]:
        if x0 is None:
            raise ConfigError.at("x0", "progressive distillation trains on data samples (got x0=None)")
        r = self.round_of(self.step)
        if self.step > 0 and r != self.round_of(self.step - 1):  # new round: the student becomes the teacher
            self.previous.load_state_dict(self.student.state_dict())
        n = self.round_schedule()[r][1]
        grid = torch.tensor(student_timesteps(2 * n) + [-1], dtype=torch.float32, device=x0.device)
        i = torch.randint(0, n, (len(x0),), generator=self.generator).to(x0.device)
        t, mid, s = grid[2 * i], grid[2 * i + 1], grid[2 * i + 2]
        sch = self.schedule
        x_t = sch.add_noise(x0, self.randn(x0.shape), t)
        with torch.no_grad():  # two DDIM steps of the previous model, then the one-step x0 that matches them
            x_mid = sch.ddim_step(x_t, self.previous_v(x_t, t, y, r), t, mid)
            x_s = sch.ddim_step(x_mid, self.previous_v(x_mid, mid, y, r), mid, s)
            frac = sch.sigma(s, x_t) / sch.sigma(t, x_t)
            target = (x_s - frac * x_t) / (sch.alpha(s, x_t) - frac * sch.alpha(t, x_t))
        x0_hat = sch.x0_eps(x_t, self.student(x_t, t, y), t)[0]
        snr = sch.alpha(t, x_t).square() / sch.sigma(t, x_t).square()
        weight = snr.clamp_min(1.0) if self.hp["weighting"] == "snr_trunc" else snr + 1.0
        loss = (weight * (x0_hat - target).square()).mean()
        self.update("student", loss)
        self.step += 1
        return {"distill": loss.item()}
