"""DMD2 (Yin et al. 2024, "Improved Distribution Matching Distillation for Fast Image Synthesis", NeurIPS).

A generator G (initialised from the teacher) maps noise to x0 at t = T - 1 in one step, or at k trailing timesteps
trained by "backward simulation" (on its own re-noised samples, at a random step of the chain). A fake score network
(a copy of the teacher) learns by denoising G's samples; G follows the distribution-matching gradient ``(x0_fake -
x0_real) / mean|xg - x0_real|`` at noised samples of G (x0_real from the guided teacher), the KL(G || teacher)
gradient. One G update per ``fake_updates`` fake updates (two time-scale rule); no regression loss (DMD2 drops it).
Simplification: the optional GAN term uses a separate small MLP discriminator on noised samples (unconditional), not
DMD2's classifier head on the fake network's encoder; the fake score learns with the v-prediction loss (DMD2:
EDM-weighted x0 loss); timesteps are uniform in [t_min, t_max].
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.diffusion.methods.base import DIFFUSION_METHODS, DiffusionMethod
from kdlab.diffusion.schedule import Samples, T, guided_v, sample_student, student_timesteps
from kdlab.errors import ConfigError
from kdlab.registry import Param


class ScoreDistillation(DiffusionMethod):
    """Shared part of DMD2 and SiD: generator, fake score trained on its samples, two time-scale updates."""

    kind = "renoise"
    student_steps = 1  # steps the generator is trained for (DMD2 reads its param)

    def setup(self) -> None:
        if self.hp["t_min"] >= self.hp["t_max"]:
            raise ConfigError.at("method_params.t_min", f"{self.hp['t_min']} is not below t_max {self.hp['t_max']}")
        self.fake = self.nets["fake"] = copy.deepcopy(self.teacher).train().requires_grad_(True)
        self.optims["student"], self.optims["fake"] = self.adam(self.student), self.adam(self.fake)
        self.updates = {"student": 0, "fake": 0}

    def x0_of(self, net: nn.Module, x: Tensor, t: Tensor, y: Tensor | None, w: float = 1.0) -> Tensor:
        return self.schedule.x0_eps(x, guided_v(net, x, t, y, w), t)[0]

    def gen_v(self, x: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
        """The generator as a denoiser (what ``sample_student`` calls)."""
        return self.student(x, t, y)

    def fresh(self, y: Tensor | None, n: int) -> Tensor:
        """Generator samples, differentiable in G; k > 1 steps: backward simulation to a random chain step."""
        ts = student_timesteps(self.student_steps)
        i = int(torch.randint(0, len(ts), (1,), generator=self.generator))
        x = self.randn((n, *self.teacher.sample_shape))
        with torch.no_grad():
            for j in range(i):
                tt = torch.full((n,), float(ts[j]), device=x.device)
                x = self.schedule.add_noise(self.x0_of(self.gen_v, x, tt, y), self.randn(x.shape), ts[j + 1])
        tt = torch.full((n,), float(ts[i]), device=x.device)
        return self.schedule.x0_eps(x, self.gen_v(x, tt, y), tt)[0]

    def fake_loss(self, xg: Tensor, y: Tensor | None) -> Tensor:
        """Denoising (v-prediction MSE) of the fake score on the generator's (detached) samples."""
        t, eps = self.rand_t(len(xg)), self.randn(xg.shape)
        return F.mse_loss(self.fake(self.schedule.add_noise(xg, eps, t), t, y), self.schedule.v_target(xg, eps, t))

    def train_step(self, x0: Tensor | None, y: Tensor | None) -> dict[str, float]:
        n, out, xg = len(y) if y is not None else len(x0) if x0 is not None else self.batch_size, {}, None
        if self.updates["fake"] % self.hp["fake_updates"] == 0:  # own count: self.step is the caller's
            self.fake.requires_grad_(False)  # its parameters take no part in G's update
            terms = self.generator_loss(xg := self.fresh(y, n), y)
            self.update("student", sum(terms.values()))
            self.fake.requires_grad_(True)
            self.updates["student"] += 1
            out |= {k: v.item() for k, v in terms.items()}
        with torch.no_grad():
            xg = self.fresh(y, n) if xg is None else xg.detach()
        self.update("fake", loss := self.fake_loss(xg, y))
        self.updates["fake"] += 1
        out["fake"] = loss.item()
        self.extra_update(xg, x0, y, out)
        self.step += 1
        return out

    def extra_update(self, xg: Tensor, x0: Tensor | None, y: Tensor | None, out: dict[str, float]) -> None:
        """Further networks' updates (DMD2's discriminator)."""

    def generate(self, z: Tensor, y: Tensor | None = None, steps: int = 1, guidance: float | None = None,
                 generator: torch.Generator | None = None, trajectory: bool = False) -> Samples:
        """The generator at ``steps`` trailing steps, re-noising in between (the guidance scale is baked in)."""
        self.student.eval()
        try:
            return sample_student(self.gen_v, self.schedule, z, y, steps, self.kind, generator, trajectory)
        finally:
            self.student.train()

    def state_dict(self) -> dict:
        return super().state_dict() | {"updates": dict(self.updates)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.updates = dict(state["updates"])


@DIFFUSION_METHODS.register("dmd2")
class DMD2(ScoreDistillation):
    """DMD2: distribution matching of a few-step generator against the teacher, through a fake score network."""

    params = {
        "fake_updates": Param(5, "fake-score updates per generator update (two time-scale update rule)", int, 1, 50),
        "student_steps": Param(1, "steps the generator is trained for (backward simulation)", int, 1, 16),
        "t_min": Param(20, "smallest timestep of the distribution-matching loss", int, 0, 998),
        "t_max": Param(980, "largest timestep of the distribution-matching loss", int, 1, T - 1),
        "gan_weight": Param(0.0, "weight of the non-saturating GAN term (0: off; needs data)", float, 0.0, 10.0),
    }
    cite = ("Yin, Gharbi, Park, Richardson, Shechtman, Durand & Freeman 2024, Improved Distribution Matching "
            "Distillation for Fast Image Synthesis (NeurIPS)")
    simplification = ("The GAN term (off by default) uses a separate small MLP discriminator on noised samples, not "
                      "a head on the fake network's encoder; the fake score is trained with the v-prediction loss "
                      "and timesteps are uniform in [t_min, t_max].")

    def setup(self) -> None:
        super().setup()
        self.student_steps = self.hp["student_steps"]
        if self.hp["gan_weight"] > 0:
            d = int(torch.tensor(self.teacher.sample_shape).prod())
            self.disc = self.nets["disc"] = nn.Sequential(nn.Linear(d + 1, 128), nn.SiLU(), nn.Linear(128, 128),
                                                          nn.SiLU(), nn.Linear(128, 1)).to(self.device)
            self.optims["disc"] = self.adam(self.disc)

    def logits(self, x: Tensor) -> Tensor:
        """Discriminator logits of ``x`` noised at a random t < T/2 (a diffusion GAN)."""
        t = self.rand_t(len(x), 0, T // 2)
        xt = self.schedule.add_noise(x, self.randn(x.shape), t)
        return self.disc(torch.cat([xt.flatten(1), t[:, None] / T], 1))

    def generator_loss(self, xg: Tensor, y: Tensor | None) -> dict[str, Tensor]:
        """DMD2's distribution-matching gradient, applied through ``0.5 |xg - sg(xg - grad)|^2``."""
        t, dims = self.rand_t(len(xg), self.hp["t_min"], self.hp["t_max"] + 1), list(range(1, xg.dim()))
        with torch.no_grad():
            xt = self.schedule.add_noise(xg, self.randn(xg.shape), t)
            real, fake = self.x0_of(self.teacher, xt, t, y, self.guidance), self.x0_of(self.fake, xt, t, y)
            grad = (fake - real) / (xg - real).abs().mean(dims, keepdim=True).clamp_min(1e-8)
        terms = {"dm": 0.5 * F.mse_loss(xg, (xg - grad).detach())}
        if self.hp["gan_weight"] > 0:
            terms["gan_g"] = self.hp["gan_weight"] * F.softplus(-self.logits(xg)).mean()
        return terms

    def extra_update(self, xg: Tensor, x0: Tensor | None, y: Tensor | None, out: dict[str, float]) -> None:
        if self.hp["gan_weight"] > 0 and x0 is not None:
            loss = F.softplus(self.logits(xg)).mean() + F.softplus(-self.logits(x0)).mean()
            self.update("disc", loss)
            out["disc"] = loss.item()
