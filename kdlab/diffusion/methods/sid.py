"""SiD (Zhou et al. 2024, "Score identity Distillation: Exponentially Fast Distillation of Pretrained Diffusion Models
for One-Step Generation", ICML).

A one-step generator G (initialised from the teacher) reads noise at time ``t_init`` and outputs x0; a fake score
network (a trainable copy of the teacher) learns by denoising ``sg(x_g)``. G minimises SiD's loss (as in the authors'
``generator_loss``), per sample at a noised ``x_t`` of ``x_g``, with ``f_real`` / ``f_fake`` the x0 predictions of the
(guided) teacher and of the fake net, both differentiated through ``x_t`` (their weights stay fixed):
``(f_real - f_fake) . ((f_real - x_g) - alpha (f_real - f_fake)) / mean|x_g - f_real|``.
Simplification: SiD is one-step; kdlab samples it at k steps by re-noising its x0 at the trailing timesteps. Noise
levels are uniform over the discrete VP timesteps [t_min, t_max] (SiD: Karras sigmas up to ``tmax``), the loss is the
mean over elements (SiD: the sum, scaled), no EMA of G, and three fake updates per G update by default (SiD: one,
at learning rates of 1e-5; at kdlab's 1e-4..1e-3 one update lets the fake score lag and G diverges on the toys).
``t_init`` = 999 reads pure noise like every kdlab student (SiD's EDM ``init_sigma`` 2.5 is about t = 756 here).
"""
from __future__ import annotations

import torch
from torch import Tensor

from kdlab.diffusion.methods.base import DIFFUSION_METHODS
from kdlab.diffusion.methods.dmd2 import ScoreDistillation
from kdlab.diffusion.schedule import T, guided_v
from kdlab.registry import Param


@DIFFUSION_METHODS.register("sid")
class SiD(ScoreDistillation):
    """Score identity Distillation: one-step generator trained through a fake score and the score identities."""

    params = {
        "alpha": Param(1.2, "SiD's alpha: weight of the fake-vs-real score gap term", float, 0.0, 5.0),
        "t_init": Param(T - 1, "timestep at which the generator reads its noise (sigma(t_init) z)", int, 100, T - 1),
        "t_min": Param(20, "smallest timestep of the generator loss", int, 0, 998),
        "t_max": Param(800, "largest timestep of the generator loss (SiD's tmax)", int, 1, T - 1),
        "fake_updates": Param(3, "fake-score updates per generator update (SiD: 1 at a far smaller learning rate)",
                              int, 1, 50),
    }
    cite = ("Zhou, Zheng, Wang, Yin & Huang 2024, Score identity Distillation: Exponentially Fast Distillation of "
            "Pretrained Diffusion Models for One-Step Generation (ICML)")
    simplification = ("One-step generator sampled at k steps by re-noising; uniform discrete timesteps in [t_min, "
                      "t_max] instead of Karras sigmas, loss averaged over elements, no EMA of the generator, 3 fake "
                      "updates per generator update by default (SiD: 1, at a much smaller learning rate).")

    def gen_v(self, x: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
        """The generator as a denoiser: its first step (t = T - 1) reads ``z`` as ``sigma(t_init) z`` at t_init."""
        t0 = self.hp["t_init"]
        if t0 == T - 1 or float(t[0]) != T - 1:
            return self.student(x, t, y)
        tin = torch.full_like(t, float(t0))
        xin = self.schedule.sigma(tin, x) * x
        x0 = self.schedule.x0_eps(xin, self.student(xin, tin, y), tin)[0]
        return self.schedule.v_from_x0(x, x0, t)

    def generator_loss(self, xg: Tensor, y: Tensor | None) -> dict[str, Tensor]:
        """SiD's generator loss at a noised ``x_t`` of ``x_g`` (gradients through x_g, f_real and f_fake)."""
        t, dims = self.rand_t(len(xg), self.hp["t_min"], self.hp["t_max"] + 1), list(range(1, xg.dim()))
        xt = self.schedule.add_noise(xg, self.randn(xg.shape), t)
        real = self.schedule.x0_eps(xt, guided_v(self.teacher, xt, t, y, self.guidance), t)[0]
        fake = self.x0_of(self.fake, xt, t, y)
        with torch.no_grad():
            weight = (xg - real).abs().mean(dims, keepdim=True).clamp_min(1e-5)
        gap = real - fake
        return {"sid": (gap * ((real - xg) - self.hp["alpha"] * gap) / weight).mean()}
