"""The noise schedule every kdlab diffusion model shares, and its samplers.

One discrete variance-preserving schedule (T = 1000 steps, diffusers' ``squaredcos_cap_v2`` cosine betas) with
v-prediction: ``x_t = a_t x0 + s_t eps`` and ``v = a_t eps - s_t x0``, so ``x0 = a_t x_t - s_t v`` stays well
conditioned at t = T - 1, where one-step students start (epsilon-prediction divides by ``a_t`` there). Teachers are
sampled with ``diffusers`` schedulers (DDIM, DDPM, Euler, DPM-Solver++) at any number of steps (not Heun: on this
schedule its Karras sigma reaches 2e4 at t = T - 1 and its trapezoidal correction diverges at few steps); students with
the two few-step rules of the distillation papers (DDIM steps, or predict-x0-and-renoise as consistency models and
DMD2 do) on "trailing" timesteps, which start at t = T - 1 (diffusers' default "leading" spacing would start a
one-step sampler at t = 0).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import diffusers  # the extra this package needs: imported here, so its absence shows at import
import torch
from torch import Tensor, nn

from kdlab.errors import ConfigError
from kdlab.registry import Registry

T = 1000
SCHEDULE = {"num_train_timesteps": T, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction"}


class NoiseSchedule:
    """Signal and noise scales of the shared schedule, and the conversions between x0, eps and v."""

    def __init__(self) -> None:
        abar = diffusers.DDPMScheduler(**SCHEDULE).alphas_cumprod.double()
        self.alphas_cumprod = torch.cat([abar, torch.ones(1, dtype=abar.dtype)])  # index -1: clean data

    def _at(self, t: Tensor | float, like: Tensor) -> Tensor:
        """``abar`` at integer-rounded timesteps ``t`` (-1 = clean), shaped to broadcast against ``like``."""
        t = torch.as_tensor(t, device=like.device).round().long().reshape(-1)
        abar = self.alphas_cumprod.to(like.device)[t].to(like.dtype)
        return abar.reshape(-1, *([1] * (like.dim() - 1)))

    def alpha(self, t: Tensor | float, like: Tensor) -> Tensor:
        return self._at(t, like).sqrt()

    def sigma(self, t: Tensor | float, like: Tensor) -> Tensor:
        return (1 - self._at(t, like)).clamp_min(0).sqrt()

    def add_noise(self, x0: Tensor, eps: Tensor, t: Tensor | float) -> Tensor:
        return self.alpha(t, x0) * x0 + self.sigma(t, x0) * eps

    def v_target(self, x0: Tensor, eps: Tensor, t: Tensor | float) -> Tensor:
        return self.alpha(t, x0) * eps - self.sigma(t, x0) * x0

    def x0_eps(self, x_t: Tensor, v: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor]:
        """The clean sample and the noise implied by a v-prediction at ``x_t``."""
        a, s = self.alpha(t, x_t), self.sigma(t, x_t)
        return a * x_t - s * v, s * x_t + a * v

    def v_from_x0(self, x_t: Tensor, x0: Tensor, t: Tensor | float) -> Tensor:
        """The v-prediction whose clean sample at ``x_t`` is ``x0`` (inverse of ``x0_eps``)."""
        a, s = self.alpha(t, x_t), self.sigma(t, x_t)
        return (a * x_t - x0) / s.clamp_min(1e-8)

    def ddim_step(self, x_t: Tensor, v: Tensor, t: Tensor | float, s: Tensor | float) -> Tensor:
        """Deterministic DDIM (probability-flow ODE) step from ``t`` to ``s`` (``s`` = -1: the clean sample)."""
        x0, eps = self.x0_eps(x_t, v, t)
        return self.add_noise(x0, eps, s)


def student_timesteps(steps: int) -> list[int]:
    """The ``steps`` trailing timesteps of a few-step student: [999] for 1, [999, 749, 499, 249] for 4."""
    check_steps(steps)
    return [round(T - 1 - i * T / steps) for i in range(steps)]


def check_steps(steps: int, where: str = "steps") -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T:
        raise ConfigError.at(where, f"sampling steps must be an integer in [1, {T}], got {steps!r}")
    return steps


def check_guidance(w: float, where: str = "guidance") -> float:
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= GUIDANCE_MAX:
        raise ConfigError.at(where, f"classifier-free guidance scale must be in [0, {GUIDANCE_MAX}] (1: no "
                             f"guidance), got {w!r}")
    return float(w)


GUIDANCE_MAX = 20.0


def guided_v(net: nn.Module, x: Tensor, t: Tensor, y: Tensor | None, w: float = 1.0) -> Tensor:
    """Classifier-free guidance ``v_u + w (v_c - v_u)``: one pass at w = 1 or without labels, else two (batched)."""
    if y is None or w == 1.0:
        return net(x, t, y)
    null = torch.full_like(y, net.num_classes)
    v_c, v_u = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
    return v_u + w * (v_c - v_u)


def passes(y: Tensor | None, w: float) -> int:
    """Network passes per step of classifier-free guidance at scale ``w``."""
    return 1 if y is None or w == 1.0 else 2


@dataclass
class Samples:
    """Generated samples, the network evaluations they cost, and (when asked) the path ``x_t`` took."""

    x: Tensor
    nfe: int
    trajectory: list[Tensor] | None = None
    timesteps: list[float] | None = None


SAMPLERS = Registry("sampler")
for _name, _cls, _doc in (("ddim", "DDIMScheduler", "DDIM (deterministic, Song et al. 2021)"),
                          ("ddpm", "DDPMScheduler", "DDPM ancestral sampling (stochastic, Ho et al. 2020)"),
                          ("euler", "EulerDiscreteScheduler", "Euler on the probability-flow ODE (Karras et al.)"),
                          ("dpm", "DPMSolverMultistepScheduler", "DPM-Solver++ (2M), multistep (Lu et al. 2022)")):
    SAMPLERS.register(_name, params={}, scheduler=_cls)(type(_name, (), {"__doc__": _doc}))


def make_scheduler(name: str, where: str = "sampler"):
    """A ``diffusers`` scheduler of the shared schedule, trailing timesteps (so 1 step starts at t = T - 1)."""
    cls = getattr(diffusers, SAMPLERS.entry(name, where=where).tags["scheduler"])
    extra = {"clip_sample": False, "set_alpha_to_one": True} if name == "ddim" else {}
    extra |= {"clip_sample": False} if name == "ddpm" else {}
    return cls(**SCHEDULE, timestep_spacing="trailing", **extra)


@torch.no_grad()
def sample_teacher(net: nn.Module, z: Tensor, y: Tensor | None = None, steps: int = 50, sampler: str = "ddim",
                   guidance: float = 1.0, generator: torch.Generator | None = None,
                   trajectory: bool = False) -> Samples:
    """Sample a denoiser from noise ``z`` with a ``diffusers`` scheduler at ``steps`` steps."""
    check_steps(steps)
    check_guidance(guidance)
    sch = make_scheduler(sampler)
    sch.set_timesteps(steps, device=z.device)
    x = z * sch.init_noise_sigma
    path, times, nfe = [x.clone()] if trajectory else None, [], 0
    kw = {"generator": generator} if sampler in ("ddpm", "euler") else {}
    for t in sch.timesteps:
        tt = torch.full((len(x),), float(t), device=x.device)
        v = guided_v(net, sch.scale_model_input(x, t), tt, y, guidance)
        nfe += passes(y, guidance)
        x = sch.step(v, t, x, **kw).prev_sample
        if trajectory:
            path.append(x.clone())
            times.append(float(t))
    return Samples(x, nfe, path, times)


StudentFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]


@torch.no_grad()
def sample_student(net: nn.Module | StudentFn, schedule: NoiseSchedule, z: Tensor, y: Tensor | None = None,
                   steps: int = 1, kind: str = "ddim", generator: torch.Generator | None = None,
                   trajectory: bool = False) -> Samples:
    """A few-step student's samples: at each trailing timestep it predicts x0, then either takes the DDIM step
    (``kind="ddim"``) or re-noises x0 with fresh noise (``"renoise"``: consistency models, DMD2)."""
    if kind not in ("ddim", "renoise"):
        raise ConfigError.at("kind", f"{kind!r} is not one of ['ddim', 'renoise']", ("ddim", "renoise"))
    ts = student_timesteps(steps)
    x, path = z, [z.clone()] if trajectory else None
    for i, t in enumerate(ts):
        s = ts[i + 1] if i + 1 < len(ts) else -1
        tt = torch.full((len(x),), float(t), device=x.device)
        x0, eps = schedule.x0_eps(x, net(x, tt, y), tt)
        if s >= 0 and kind == "renoise":
            eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = schedule.add_noise(x0, eps, s) if s >= 0 else x0
        if trajectory:
            path.append(x.clone())
    return Samples(x, steps, path, [float(t) for t in ts])
