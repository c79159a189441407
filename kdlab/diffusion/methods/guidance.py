"""Guidance distillation into an adapter: Jensen et al. 2025, "Efficient Distillation of Classifier-Free Guidance using
Adapters" (AGD), on the objective of Meng et al. 2023, "On Distillation of Guided Diffusion Models" (stage one).

Classifier-free guidance costs two network passes per step. The student is the FROZEN teacher plus a small adapter:
(Fourier features of the guidance scale w, the time embedding, a class embedding) -> MLP -> a vector added (forward
hook) to the output of the teacher's ``time_embedding``; one pass of ``student(x_t, t, y; w)`` is trained to equal
the guided ``v_u + w (v_c - v_u)``, w uniform in [w_min, w_max], at the states x_t of the teacher's guided sampling
paths (AGD; ``states="data"``: forward-noised data as in Meng et al.). The adapter's last layer starts at zero, so
before training the student is exactly the conditional teacher. Sampling then halves the network evaluations.
Simplification: one adapter on the time embedding (AGD: one per block), paths drawn once (``paths`` DDIM runs).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.diffusion.methods.base import DIFFUSION_METHODS, DiffusionMethod
from kdlab.diffusion.schedule import Samples, student_timesteps
from kdlab.errors import ConfigError
from kdlab.registry import Param


class GuidanceAdapter(nn.Module):
    """(Fourier features of w, the time embedding, a class embedding of its own) -> MLP -> an offset of the time
    embedding, zero at init: a function of w, t and y, as AGD's adapters with their timestep and class inputs."""

    def __init__(self, out_dim: int, num_classes: int, width: int = 64, w: float = 1.0, n_freq: int = 16):
        super().__init__()
        self.register_buffer("freqs", torch.randn(n_freq) * 0.5)
        self.classes = nn.Embedding(num_classes + 1, width)
        self.inp = nn.Linear(2 * n_freq + out_dim, width)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, out_dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.w: float | Tensor = w  # the guidance scale of the next passes: a float or one per sample
        self.y: Tensor | None = None  # the labels of the current pass (None: the null label)

    def forward(self, emb: Tensor) -> Tensor:
        w = torch.as_tensor(self.w, dtype=torch.float32, device=emb.device).reshape(-1).expand(len(emb))
        angles = 2 * math.pi * w[:, None] * self.freqs[None]
        y = torch.full((len(emb),), len(self.classes.weight) - 1, device=emb.device) if self.y is None else self.y
        return self.mlp(self.inp(torch.cat([angles.sin(), angles.cos(), emb.float()], 1)) + self.classes(y))

    def see_labels(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook of the denoiser ``net(x, t, y)``: remember ``y`` for the time-embedding hook."""
        self.y = kwargs.get("y", args[2] if len(args) > 2 else None)

    def hook(self, module: nn.Module, args: tuple, out: Tensor) -> Tensor:
        return out + self(out).to(out.dtype)


@DIFFUSION_METHODS.register("guidance")
class GuidanceDistillation(DiffusionMethod):
    """Guidance distillation into an adapter of the frozen teacher: guided quality at one pass per step."""

    params = {
        "w_min": Param(1.0, "smallest guidance scale the adapter is trained at", float, 0.0, 20.0),
        "w_max": Param(5.0, "largest guidance scale the adapter is trained at", float, 0.0, 20.0),
        "adapter_width": Param(64, "hidden width of the adapter MLP", int, 4, 4096),
        "states": Param("guided", "x_t to train at: on the teacher's guided DDIM paths (AGD) or noised data (Meng)",
                        str, choices=("guided", "data")),
        "paths": Param(1024, "guided 25-step teacher paths drawn once at the start (states 'guided')", int, 8,
                       100_000),
    }
    cite = ("Jensen et al. 2025, Efficient Distillation of Classifier-Free Guidance using Adapters (AGD); Meng et al. "
            "2023, On Distillation of Guided Diffusion Models (CVPR), stage one")
    simplification = ("One adapter (of w, t and y) offsets the teacher's time embedding instead of adapters in "
                      "every block; its training paths are a fixed set of 25-step guided DDIM runs.")
    kind = "ddim"
    needs_labels = True

    def setup(self) -> None:
        if not self.data.num_classes:
            raise ConfigError.at("method", f"guidance distillation needs class labels; {self.data.name!r} has none")
        if self.hp["w_min"] > self.hp["w_max"]:
            raise ConfigError.at("method_params.w_min", f"w_min {self.hp['w_min']} is above w_max {self.hp['w_max']}")
        if getattr(self.student, "config", None) != self.teacher.config:
            raise ConfigError.at("student", "guidance distillation adapts the frozen teacher (or a denoiser of its "
                                 "architecture); leave the student width at the teacher's")
        self.student.requires_grad_(False)
        emb = self.student.time_embedding
        seen: list[int] = []  # the width of the time embedding, from one probing pass
        probe = emb.register_forward_hook(lambda m, a, out: seen.append(out.shape[-1]))
        with torch.no_grad():
            self.student(torch.zeros(1, *self.teacher.sample_shape, device=self.device),
                         torch.zeros(1, device=self.device))
        probe.remove()
        self.adapter = GuidanceAdapter(seen[0], self.teacher.num_classes, self.hp["adapter_width"], self.guidance)
        self.adapter.to(self.device)
        self.student.register_forward_pre_hook(self.adapter.see_labels, with_kwargs=True)
        emb.register_forward_hook(self.adapter.hook)
        self.nets["adapter"], self.optims["adapter"] = self.adapter, self.adam(self.adapter)
        if self.hp["states"] == "guided":  # AGD: the states guided sampling visits (fixed, as AGD's stored paths)
            n, self.path_t = self.hp["paths"], torch.tensor(student_timesteps(25), dtype=torch.float32)
            self.path_y, self.path_w = self.rand_labels(n), self.rand_w(n)
            x, states = self.randn((n, *self.teacher.sample_shape)), []
            for i, t in enumerate(self.path_t.tolist()):
                states.append(x)
                tt = torch.full((n,), t, device=self.device)
                x = self.schedule.ddim_step(x, self.guided_target(x, tt, self.path_y, self.path_w), tt,
                                            self.path_t[i + 1].item() if i < 24 else -1)
            self.path_x = torch.stack(states)

    def rand_w(self, n: int) -> Tensor:
        return torch.empty(n).uniform_(self.hp["w_min"], self.hp["w_max"], generator=self.generator).to(self.device)

    @torch.no_grad()
    def guided_target(self, x: Tensor, t: Tensor, y: Tensor, w: Tensor) -> Tensor:
        """The teacher's two-pass guided v, one w per sample."""
        v_c, v_u = self.teacher(x, t, y), self.teacher(x, t, torch.full_like(y, self.teacher.num_classes))
        return v_u + w.reshape(-1, *[1] * (x.dim() - 1)) * (v_c - v_u)

    def student_v(self, x: Tensor, t: Tensor, y: Tensor | None, w: float | Tensor) -> Tensor:
        self.adapter.w = w
        try:
            return self.student(x, t, y)
        finally:
            self.adapter.w = self.guidance

    def train_step(self, x0: Tensor | None, y: Tensor | None) -> dict[str, float]:
        n = len(x0) if x0 is not None else self.batch_size
        if self.hp["states"] == "guided":  # (the batch is not used: the paths are the teacher's)
            i, j = torch.randint(0, 25, (n,), generator=self.generator), torch.randint(0, len(self.path_w), (n,),
                                                                                      generator=self.generator)
            x_t, t, y, w = self.path_x[i, j], self.path_t[i].to(self.device), self.path_y[j], self.path_w[j]
        else:
            if x0 is None or y is None:
                raise ConfigError.at("y", "guidance distillation with states='data' needs labelled samples")
            w, t = self.rand_w(n), self.rand_t(n)
            x_t = self.schedule.add_noise(x0, self.randn(x0.shape), t)
        loss = F.mse_loss(self.student_v(x_t, t, y, w), self.guided_target(x_t, t, y, w))
        self.update("adapter", loss)
        self.step += 1
        return {"guided": loss.item()}

    def save_student(self, folder: str | Path) -> None:
        """The frozen teacher copy as a denoiser folder plus ``adapter.safetensors`` (the trained part)."""
        from safetensors.torch import save_file

        super().save_student(folder)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.adapter.state_dict().items()},
                  Path(folder) / "adapter.safetensors")

    def generate(self, z: Tensor, y: Tensor | None = None, steps: int = 1, guidance: float | None = None,
                 generator: torch.Generator | None = None, trajectory: bool = False) -> Samples:
        """DDIM sampling of teacher + adapter at guidance ``guidance`` (default: the job's): one pass per step."""
        self.adapter.w = self.guidance if guidance is None else float(guidance)
        try:
            return super().generate(z, y, steps, guidance, generator, trajectory)
        finally:
            self.adapter.w = self.guidance

    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.adapter.parameters())
