"""Consistency distillation (Song et al. 2023, "Consistency Models"), in the latent-consistency form of Luo et al. 2023.

The consistency function is ``f(x_t, t) = c_skip(t) x_t + c_out(t) x0_hat(x_t, t)``, with ``x0_hat`` the student's
x0 from its v-prediction and LCM's boundary scalings ``c_skip = sd^2 / ((10 (t+1))^2 + sd^2)``,
``c_out = 10 (t+1) / sqrt((10 (t+1))^2 + sd^2)`` (``sd`` = 0.5), shifted by one so that at ``t = -1`` (clean data)
``f(x, -1) = x`` exactly. Training draws a point ``t`` of a ``num_steps``-point trailing grid (LCM's skip-step
discretisation: 999, 979, ..., 19 for 50; default 20, near the CM paper's N = 18 on CIFAR-10), noises a data
sample to ``x_t``, takes ONE DDIM step of the (guided) teacher to the next grid point ``t_prev`` (-1 after the
last), and regresses ``f_student(x_t, t)`` onto ``sg[f_ema(x_{t_prev}, t_prev)]`` with an EMA copy of the student,
under squared L2 or pseudo-Huber. Multistep sampling predicts x0 and re-noises it with fresh noise.
Simplification: the guidance scale is baked into the student (LCM conditions the student on w; kdlab distils one
w) and the grid points are weighted uniformly.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from kdlab.diffusion.methods.base import DIFFUSION_METHODS, DiffusionMethod
from kdlab.diffusion.schedule import Samples, sample_student, student_timesteps
from kdlab.diffusion.teacher import ema_update
from kdlab.errors import ConfigError
from kdlab.registry import Param

SIGMA_DATA, TIME_SCALE = 0.5, 10.0  # LCM's boundary-condition constants


@DIFFUSION_METHODS.register("consistency")
class ConsistencyDistillation(DiffusionMethod):
    """Consistency distillation: the student maps every point of a teacher ODE path to the same clean sample."""

    params = {
        "num_steps": Param(20, "points N of the ODE grid, a teacher DDIM step apart (CM: 18-40; LCM: 50)", int, 2,
                           1000),
        "ema": Param(0.95, "decay of the EMA target network (0: the student itself, stop-gradient)", float, 0.0,
                     1.0, high_open=True),
        "loss": Param("l2", "distance: squared L2 or pseudo-Huber sqrt(|d|^2 + c^2) - c", str,
                      choices=("l2", "huber")),
        "huber_c": Param(0.00054, "pseudo-Huber c per sqrt(dimension) (c = huber_c * sqrt(d), as in iCT)", float,
                         0.0, 10.0, low_open=True),
    }
    cite = "Song, Dhariwal, Chen & Sutskever 2023, Consistency Models (ICML); LCM form of Luo et al. 2023"
    simplification = ("The student is f = c_skip x_t + c_out x0(v) with LCM's boundary scalings in the discrete VP "
                      "schedule (exact f(x, -1) = x), one guidance scale is baked in (not a w-conditioned student) "
                      "and the grid points are weighted uniformly.")
    kind = "renoise"

    def setup(self) -> None:
        self.target = self.nets["ema"] = copy.deepcopy(self.student).eval().requires_grad_(False)
        self.grid = student_timesteps(self.hp["num_steps"]) + [-1]

    def consistency_fn(self, net: nn.Module, x: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
        """``f(x, t) = c_skip(t) x + c_out(t) x0_hat(x, t)``; ``t = -1`` gives ``x`` exactly."""
        x0 = self.schedule.x0_eps(x, net(x, t.clamp_min(0), y), t)[0]
        tau = (TIME_SCALE * (t + 1)).reshape(-1, *([1] * (x.dim() - 1)))
        c_skip = SIGMA_DATA**2 / (tau.square() + SIGMA_DATA**2)
        c_out = tau / (tau.square() + SIGMA_DATA**2).sqrt()
        return c_skip * x + c_out * x0

    def train_step(self, x0: Tensor | None, y: Tensor | None) -> dict[str, float]:
        if x0 is None:
            raise ConfigError.at("x0", "consistency distillation noises data samples (got x0=None)")
        grid = torch.tensor(self.grid, dtype=torch.float32, device=x0.device)
        i = torch.randint(0, len(self.grid) - 1, (len(x0),), generator=self.generator).to(x0.device)
        t, t_prev = grid[i], grid[i + 1]
        sch = self.schedule
        x_t = sch.add_noise(x0, self.randn(x0.shape), t)
        with torch.no_grad():  # one teacher ODE step, then the EMA target's consistency output there
            x_prev = sch.ddim_step(x_t, self.teacher_v(x_t, t, y), t, t_prev)
            target = self.consistency_fn(self.target, x_prev, t_prev, y)
        d = (self.consistency_fn(self.student, x_t, t, y) - target).flatten(1)
        if self.hp["loss"] == "l2":
            loss = d.square().mean()
        else:
            c = self.hp["huber_c"] * d.shape[1] ** 0.5
            loss = ((d.square().sum(1) + c * c).sqrt() - c).mean()
        self.update("student", loss)
        ema_update(self.target, self.student, self.hp["ema"])
        self.step += 1
        return {"consistency": loss.item()}

    def generate(self, z: Tensor, y: Tensor | None = None, steps: int = 1, guidance: float | None = None,
                 generator: torch.Generator | None = None, trajectory: bool = False) -> Samples:
        """Multistep consistency sampling: f at each trailing timestep, re-noised with fresh noise in between."""
        def v_of_f(x: Tensor, t: Tensor, y: Tensor | None) -> Tensor:  # the v whose x0 is f(x, t)
            return self.schedule.v_from_x0(x, self.consistency_fn(self.student, x, t, y), t)

        self.student.eval()
        try:
            return sample_student(v_of_f, self.schedule, z, y, steps, self.kind, generator, trajectory)
        finally:
            self.student.train()
