"""Multi-student distillation (Song et al. 2024, "Multi-student Diffusion Distillation for Better One-step
Generators", ICML 2025).

The classes are split into ``n_students`` contiguous groups; student k is distilled, by a base method from the
registry (DMD2 by default, or consistency / progressive distillation), on the samples and labels of its group only,
and ``generate`` routes each label to its group's student. Each student models a simpler distribution, so the same
capacity gives better one-step samples, or a smaller student the same quality (``student_width_scale``; a student
passed in, e.g. the job's ``student_width``, is copied for every group instead).
Simplification: each training batch is split by group (the paper gives each student its own data loader), the
grouping is by class index (the paper also groups by similarity), and smaller students start from random weights
(the paper first pretrains them by teacher score matching).
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdlab.diffusion.data import DiffusionData
from kdlab.diffusion.methods.base import DIFFUSION_METHODS, DiffusionMethod, create_diffusion_method
from kdlab.diffusion.models import create_denoiser
from kdlab.diffusion.schedule import Samples
from kdlab.errors import ConfigError
from kdlab.registry import Param


@DIFFUSION_METHODS.register("multi_student")
class MultiStudent(DiffusionMethod):
    """Multi-student distillation: one student per group of classes, each distilled on its group alone."""

    params = {
        "n_students": Param(2, "number of students (the classes are split into this many groups)", int, 1, 100),
        "base": Param("dmd2", "how each student is distilled (a registered method)", str,
                      choices=("dmd2", "consistency", "progressive")),
        "base_params": Param({}, "parameters of the base method (its defaults where missing)", dict),
        "student_width_scale": Param(1.0, "student width relative to the teacher's (< 1: smaller, random init)",
                                     float, 0.05, 1.0),
    }
    cite = ("Song, Lorraine, Nie, Kreis & Lucas 2024, Multi-student Diffusion Distillation for Better One-step "
            "Generators (ICML 2025)")
    simplification = ("Batches are split by class group, groups are contiguous class ranges, and smaller students "
                      "start from random weights (no teacher-score-matching pretraining).")
    kind = "renoise"
    needs_labels = True

    def __init__(self, teacher: nn.Module, schedule: Any, data: DiffusionData, hp: dict[str, Any], **kw: Any):
        k, c = hp["n_students"], data.num_classes
        if not c:
            raise ConfigError.at("method", f"multi-student distillation needs class labels; {data.name!r} has none")
        if k > c:
            raise ConfigError.at("method_params.n_students", f"{k} students for {c} classes; at most {c}")
        self.group_of = torch.arange(c) * k // c  # class -> student (contiguous ranges)
        self.students: list[DiffusionMethod] = []
        seed, given = kw.get("seed", 0), kw.pop("student", None)  # a given student: each group gets a copy
        for g in range(k):
            student = self.make_student(teacher, hp["student_width_scale"]) if given is None else copy.deepcopy(given)
            sub_kw = dict(kw, seed=seed + g, student=student)
            self.students.append(create_diffusion_method(hp["base"], hp["base_params"], teacher, schedule,
                                                         self.subset(data, g), where="method.base", **sub_kw))
        super().__init__(teacher, schedule, data, hp, **dict(kw, student=self.students[0].student))

    def setup(self) -> None:
        self.nets = {}  # the students' methods own their networks and optimisers
        self.kind, self.data_free = self.students[0].kind, self.students[0].data_free

    @staticmethod
    def make_student(teacher: nn.Module, scale: float) -> nn.Module | None:
        """None (a copy of the teacher) at scale 1, else a fresh denoiser of the scaled width."""
        if scale >= 1.0:
            return None
        cfg = teacher.config
        if cfg["arch"] == "mlp":
            return create_denoiser((cfg["dim"],), cfg["num_classes"], "mlp", max(4, round(cfg["width"] * scale)),
                                   depth=cfg["depth"])
        return create_denoiser(cfg["sample_shape"], cfg["num_classes"], "unet",
                               channels=[max(8, round(ch * scale / 8) * 8) for ch in cfg["channels"]],
                               layers_per_block=cfg["layers_per_block"])

    def subset(self, data: DiffusionData, g: int) -> DiffusionData:
        """The samples of group ``g``'s classes (labels keep their global ids)."""
        tr, te = self.group_of[data.train_labels] == g, self.group_of[data.test_labels] == g
        return dataclasses.replace(data, train=data.train[tr], train_labels=data.train_labels[tr],
                                   test=data.test[te], test_labels=data.test_labels[te])

    def groups(self, y: Tensor | None) -> Tensor:
        if y is None:
            raise ConfigError.at("y", "multi-student distillation routes by class label (got none)")
        return self.group_of.to(y.device)[y]

    def train_step(self, x0: Tensor | None, y: Tensor | None) -> dict[str, float]:
        out: dict[str, float] = {}
        grp = self.groups(y)
        for g, sub in enumerate(self.students):
            m = grp == g
            if m.any():
                terms = sub.train_step(None if x0 is None else x0[m], y[m])
                out |= {f"s{g}/{k}": v for k, v in terms.items()}
        self.step += 1
        return out

    def generate(self, z: Tensor, y: Tensor | None = None, steps: int = 1, guidance: float | None = None,
                 generator: torch.Generator | None = None, trajectory: bool = False) -> Samples:
        """Each sample from the student of its label's group."""
        grp, x, path, nfe, times = self.groups(y), z.clone(), None, 0, None
        for g, sub in enumerate(self.students):
            m = grp == g
            if not m.any():
                continue
            s = sub.generate(z[m], y[m], steps, guidance, generator, trajectory)
            x[m], nfe, times = s.x, max(nfe, s.nfe), s.timesteps
            if trajectory:
                path = path or [z.clone() for _ in s.trajectory]
                for p, q in zip(path, s.trajectory, strict=True):
                    p[m] = q
        return Samples(x, nfe, path, times)

    def trainable_params(self) -> int:
        return sum(s.trainable_params() for s in self.students)

    def save_student(self, folder: str | Path) -> None:
        """One denoiser folder per student (``student_<g>``) and ``groups.json``: class -> student."""
        for g, sub in enumerate(self.students):
            sub.save_student(Path(folder) / f"student_{g}")
        (Path(folder) / "groups.json").write_text(json.dumps({"group_of_class": self.group_of.tolist()}))

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "students": [s.state_dict() for s in self.students]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        for s, st in zip(self.students, state["students"], strict=True):
            s.load_state_dict(st)
