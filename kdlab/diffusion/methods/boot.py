"""BOOT (Gu et al. 2023): data-free distillation of a diffusion model by bootstrapping along its ODE paths.

The student ``g(eps, t)`` maps the starting noise ``eps`` and a time ``t`` to the "signal" of the teacher's DDIM
(probability-flow ODE) path from ``eps``: ``y_t = (x_t - s_t eps) / a_t``, so ``x_t = a_t y_t + s_t eps``, and
``y_{-1}`` is the path's clean end, the sample. It never sees data: each step draws noise (and labels). Boundary:
``g(eps, T-1)`` regresses onto the teacher's x0 prediction at ``eps``. Bootstrapping: from the student's own point
``x_t = a_t sg[g(eps, t)] + s_t eps`` one teacher DDIM step to the next point ``s`` of an ``num_steps`` grid gives
``x_s``, and ``g(eps, s)`` regresses onto ``(x_s - s_s eps) / a_s``. The student is the teacher's network read as
``g(eps, t) = a_{T-1} eps - s_{T-1} net(eps, t)`` (its x0 at the noise level of ``eps``, told time ``t``): a copy of
the teacher satisfies the boundary exactly at initialisation. Simplification: plain L2 in signal space on a fixed
grid (no signal-ODE derivation, time weighting or random step sizes of the paper), one guidance scale baked in.
The student is a one-step generator: any ``steps`` returns ``g(z, -1)`` (1 network evaluation); ``trajectory``
adds the predicted ODE path ``x_t = a_t g(z, t) + s_t z`` at the trailing timesteps (for display only).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from kdlab.diffusion.methods.base import DIFFUSION_METHODS, DiffusionMethod
from kdlab.diffusion.schedule import Samples, T, check_steps, student_timesteps
from kdlab.registry import Param


@DIFFUSION_METHODS.register("boot")
class BOOT(DiffusionMethod):
    """BOOT: data-free, the student predicts the teacher's ODE path from the noise and bootstraps along it."""

    params = {
        "num_steps": Param(20, "grid points of the ODE path (one teacher DDIM step between neighbours)", int, 2, 1000),
        "boundary_weight": Param(1.0, "weight of the boundary loss g(eps, T-1) = teacher x0(eps)", float, 0.0, 100.0),
        "null_frac": Param(0.1, "share of drawn labels set to the null label (the student also learns the "
                           "unconditional paths); labelled data only", float, 0.0, 1.0),
    }
    cite = "Gu, Zhai, Zhang, Liu & Susskind 2023, BOOT: Data-free Distillation of Denoising Diffusion Models " \
           "with Bootstrapping (arXiv 2306.05544)"
    simplification = ("Plain L2 between the student's signal and one teacher DDIM step from its own earlier "
                      "prediction, on a fixed grid (no signal-ODE reparametrisation, time weighting or random step "
                      "sizes); a one-step generator, so k > 1 sampling steps return the same sample.")
    kind = "ddim"  # unused: ``generate`` is overridden (the student only samples in one step)
    data_free = True

    def setup(self) -> None:
        self.grid = student_timesteps(self.hp["num_steps"]) + [-1]

    def g(self, net: nn.Module, eps: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
        """The signal ``y_t`` of the teacher's ODE path from ``eps``, as predicted by ``net`` (clean at t = -1)."""
        last = torch.full_like(t, T - 1)
        return self.schedule.x0_eps(eps, net(eps, t, y), last)[0]

    def draw_labels(self, n: int) -> Tensor | None:
        """Labels like the training labels', a ``null_frac`` share of them null (None without classes)."""
        y = self.rand_labels(n)
        if y is None:
            return None
        null = torch.rand(n, generator=self.generator).to(y.device) < self.hp["null_frac"]
        return torch.where(null, torch.full_like(y, self.teacher.num_classes), y)

    def train_step(self, x0: Tensor | None, y: Tensor | None) -> dict[str, float]:
        """One update from noise alone (``x0`` is ignored: BOOT is data-free)."""
        n = self.batch_size if y is None else len(y)
        y = self.draw_labels(n) if y is None else y
        eps = self.randn((n, *self.teacher.sample_shape))
        grid = torch.tensor(self.grid, dtype=torch.float32, device=eps.device)
        i = torch.randint(0, len(self.grid) - 1, (n,), generator=self.generator).to(eps.device)
        t, s, last = grid[i], grid[i + 1], torch.full((n,), float(T - 1), device=eps.device)
        sch = self.schedule
        with torch.no_grad():  # bootstrap target: one teacher DDIM step from the student's own point at t
            x_t = sch.add_noise(self.g(self.student, eps, t, y), eps, t)
            x_s = sch.ddim_step(x_t, self.teacher_v(x_t, t, y), t, s)
            target = (x_s - sch.sigma(s, eps) * eps) / sch.alpha(s, eps)
            boundary = sch.x0_eps(eps, self.teacher_v(eps, last, y), last)[0]
        yy = None if y is None else torch.cat([y, y])
        g_s, g_last = self.g(self.student, torch.cat([eps, eps]), torch.cat([s, last]), yy).chunk(2)
        boot, bound = (g_s - target).square().mean(), (g_last - boundary).square().mean()
        self.update("student", boot + self.hp["boundary_weight"] * bound)
        self.step += 1
        return {"bootstrap": boot.item(), "boundary": bound.item()}

    @torch.no_grad()
    def generate(self, z: Tensor, y: Tensor | None = None, steps: int = 1, guidance: float | None = None,
                 generator: torch.Generator | None = None, trajectory: bool = False) -> Samples:
        """The one-step sample ``g(z, -1)``; with ``trajectory`` also the predicted path at the trailing steps."""
        ts = student_timesteps(check_steps(steps))
        times = (ts[1:] if trajectory else []) + [-1]
        n = len(z)
        tt = torch.tensor(times, dtype=torch.float32, device=z.device).repeat_interleave(n)
        yy = None if y is None else y.repeat(len(times))
        self.student.eval()
        try:
            sig = self.g(self.student, z.repeat(len(times), *([1] * (z.dim() - 1))), tt, yy).split(n)
        finally:
            self.student.train()
        path = [z.clone()] + [self.schedule.add_noise(g, z, t) for g, t in zip(sig, times, strict=True)]
        return Samples(sig[-1], 1, path if trajectory else None, [float(t) for t in ts])
