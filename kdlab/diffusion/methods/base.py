"""The contract of a diffusion distillation method and its registry (the mdistiller idea for generators).

A method owns the student(s) and any auxiliary networks (a fake score, an EMA target, a discriminator) and their
optimisers; ``train_step(x0, y)`` does one update and returns its named loss terms; ``generate`` samples the
student at any number of steps. The teacher is frozen. Everything that resumes a run is in ``state_dict``.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdlab.diffusion.data import DiffusionData
from kdlab.diffusion.models import check_same_output, save_denoiser
from kdlab.diffusion.schedule import NoiseSchedule, Samples, T, check_guidance, guided_v, sample_student
from kdlab.errors import ConfigError
from kdlab.registry import Param, Registry

DIFFUSION_METHODS = Registry("diffusion distillation method")


class DiffusionMethod:
    """Base of a method: declared ``params``, the paper (``cite``), what kdlab simplifies, how students sample."""

    params: dict[str, Param] = {}
    cite = ""
    simplification = ""
    kind = "ddim"  # the student's k-step rule: "ddim" or "renoise" (see kdlab.diffusion.schedule.sample_student)
    data_free = False  # True: train_step gets x0=None (the method learns from the teacher alone)
    needs_labels = False  # True: refuses unconditional data
    total_steps: int | None = None  # the run's number of updates (methods with schedules, e.g. rounds, use it)

    def __init__(self, teacher: nn.Module, schedule: NoiseSchedule, data: DiffusionData, hp: Mapping[str, Any],
                 *, student: nn.Module | None = None, seed: int = 0, device: str = "cpu", guidance: float = 1.0,
                 lr: float = 1e-4, batch_size: int = 256, total_steps: int | None = None):
        if total_steps is not None:
            self.total_steps = int(total_steps)
        self.teacher = teacher.to(device).eval().requires_grad_(False)
        self.schedule, self.data, self.hp = schedule, data, dict(hp)
        self.device, self.lr, self.batch_size, self.seed = device, float(lr), int(batch_size), int(seed)
        self.guidance = check_guidance(guidance)
        self.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        student = copy.deepcopy(teacher) if student is None else student
        check_same_output(teacher, student.to(device))
        self.student = student.to(device).train().requires_grad_(True)
        self.nets: dict[str, nn.Module] = {"student": self.student}
        self.optims: dict[str, torch.optim.Optimizer] = {}
        self.step = 0
        self.setup()
        if not self.optims:
            self.optims["student"] = self.adam(self.student)

    def setup(self) -> None:
        """Build auxiliary networks and optimisers (``self.nets``, ``self.optims``); default: one AdamW."""

    def adam(self, net: nn.Module, lr: float | None = None) -> torch.optim.Optimizer:
        return torch.optim.AdamW(net.parameters(), lr=lr or self.lr, betas=(0.9, 0.99), weight_decay=0.0)

    # ----------------------------------------------------------------------------------- randomness (seeded)
    def randn(self, shape: tuple[int, ...] | torch.Size) -> Tensor:
        return torch.randn(tuple(shape), generator=self.generator).to(self.device)

    def rand_t(self, n: int, low: int = 0, high: int = T) -> Tensor:
        """``n`` integer timesteps in [low, high), as floats."""
        return torch.randint(low, high, (n,), generator=self.generator).float().to(self.device)

    def rand_labels(self, n: int) -> Tensor | None:
        """Labels drawn like the training labels' distribution (None for unconditional data)."""
        if not self.data.num_classes:
            return None
        pool = self.data.train_labels
        return pool[torch.randint(0, len(pool), (n,), generator=self.generator)].to(self.device)

    def teacher_v(self, x: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
        """The frozen teacher's (guided) v-prediction."""
        with torch.no_grad():
            return guided_v(self.teacher, x, t, y, self.guidance)

    # --------------------------------------------------------------------------------------------- contract
    def train_step(self, x0: Tensor | None, y: Tensor | None) -> dict[str, float]:
        """One update (it counts ``self.step``); returns the named loss terms (floats)."""
        raise NotImplementedError

    def update(self, name: str, loss: Tensor) -> None:
        """Back-propagate ``loss`` and step optimiser ``name`` (gradients of that optimiser's parameters only)."""
        opt = self.optims[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def generate(self, z: Tensor, y: Tensor | None = None, steps: int = 1, guidance: float | None = None,
                 generator: torch.Generator | None = None, trajectory: bool = False) -> Samples:
        """The student's samples from noise ``z`` in ``steps`` steps (``guidance`` is used by methods that take it)."""
        self.student.eval()
        try:
            return sample_student(self.student, self.schedule, z, y, steps, self.kind, generator, trajectory)
        finally:
            self.student.train()

    def save_student(self, folder: str | Path) -> None:
        """The trained student as a denoiser folder (``kdlab.diffusion.load_denoiser`` reads it)."""
        save_denoiser(self.student, folder, meta={"method": self.name, "kind": self.kind})

    @property
    def name(self) -> str:
        return next((n for n in DIFFUSION_METHODS.names() if DIFFUSION_METHODS.get(n) is type(self)), "")

    def trainable_params(self) -> int:
        """Parameters the student trains (adapters count, frozen teacher parts do not)."""
        return sum(p.numel() for p in self.student.parameters() if p.requires_grad)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "generator": self.generator.get_state(),
                "nets": {k: m.state_dict() for k, m in self.nets.items()},
                "optims": {k: o.state_dict() for k, o in self.optims.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.step = int(state["step"])
        self.generator.set_state(state["generator"])
        for k, m in self.nets.items():
            m.load_state_dict(state["nets"][k])
        for k, o in self.optims.items():
            o.load_state_dict(state["optims"][k])


def create_diffusion_method(name: str, hp: Mapping[str, Any] | None, teacher: nn.Module, schedule: NoiseSchedule,
                            data: DiffusionData, where: str = "method", **kw: Any) -> DiffusionMethod:
    """A registered method with validated parameters (unknown names and bad values name the field)."""
    cls = DIFFUSION_METHODS.entry(name, where=where).obj
    values = DIFFUSION_METHODS.validate(name, hp, where=f"{where}_params")
    if cls.needs_labels and not data.num_classes:
        labelled = [n for n, e in ((n, DIFFUSION_METHODS.entry(n)) for n in DIFFUSION_METHODS.names())
                    if not e.obj.needs_labels]
        raise ConfigError.at(where, f"{name!r} needs class labels and {data.name!r} has none; methods for "
                             f"unconditional data: {', '.join(labelled)}", labelled)
    return cls(teacher, schedule, data, values, **kw)
