"""The distiller contract (mdistiller's idea): teacher + student + adapters + weighted loss terms.

``forward_train(x, y, teacher_out)`` returns the student logits and a dict of named, already weighted
loss terms; the trainer sums them and logs each one. ``forward(x)`` is the student at inference.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.distill.adapters import make_adapter
from kdlab.errors import ConfigError, ShapeError
from kdlab.models.taps import FeatureTaps, chosen_layers, feature_shapes, num_logits
from kdlab.registry import Param, Registry

METHODS = Registry("method")

#: Parameters every method accepts: the weight of the student's own cross-entropy on labels.
CE_WEIGHT = Param(1.0, "weight of the cross-entropy on ground-truth labels", float, 0.0, 100.0)
LAYERS = Param(None, "module paths to tap (None: the model's declared stages)", list)


def feature_params(feat_weight: Param, **extra: Param) -> dict[str, Param]:
    """Params of a feature method: ce_weight, ``feat_weight``, any ``extra``, teacher_layers, student_layers."""
    return {"ce_weight": CE_WEIGHT, "feat_weight": feat_weight, **extra, "teacher_layers": LAYERS,
            "student_layers": LAYERS}


def register_method(name: str, **tags: Any) -> Callable:
    """Register a ``Distiller`` subclass under ``name``; its ``params`` class attribute is declared."""

    def wrap(cls: type) -> type:
        cls.method_name = name
        return METHODS.register(name, **tags)(cls)

    return wrap


@dataclass
class TeacherOutput:
    """What the teacher gives a method: logits and the tapped features (both detached)."""

    logits: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)

    def index(self, idx: torch.Tensor) -> TeacherOutput:
        return TeacherOutput(self.logits[idx], {k: v[idx] for k, v in self.features.items()})

    def to(self, device: torch.device | str) -> TeacherOutput:
        return TeacherOutput(self.logits.to(device, non_blocking=True),
                             {k: v.to(device, non_blocking=True) for k, v in self.features.items()})


class Distiller(nn.Module):
    """Base class. Subclasses set ``params`` and implement ``losses``.

    Class flags tell the trainer what it may do: ``uses_teacher`` (False for teacher-free methods),
    ``cacheable`` (teacher outputs depend on the input sample alone, so they can be computed once),
    ``trains_teacher`` (online methods such as DML update the teacher too). Feature methods set
    ``feature_kind`` ("stages" or "embedding") and get adapters built from probed shapes.
    """

    params: ClassVar[dict[str, Param]] = {"ce_weight": CE_WEIGHT}
    uses_teacher: ClassVar[bool] = True
    cacheable: ClassVar[bool] = True
    trains_teacher: ClassVar[bool] = False
    feature_kind: ClassVar[str | None] = None
    method_name: ClassVar[str] = "distiller"
    needs_adapters: ClassVar[bool] = False

    def __init__(self, teacher: nn.Module | None, student: nn.Module, in_shape: Sequence[int], **params: Any):
        super().__init__()
        self.hp = params
        self.progress = 0.0  # fraction of training done, set by the trainer (schedules such as TAID's)
        self.in_shape = tuple(in_shape)
        self.student = student
        self.teacher = teacher
        if self.uses_teacher and teacher is None:
            raise ConfigError(f"method {self.method_name!r} needs a teacher model")
        if teacher is not None and not self.trains_teacher:
            for p in teacher.parameters():
                p.requires_grad_(False)
            teacher.eval()
        self.num_classes = self._check_classes()
        self.teacher_layers: list[str] = []
        self.student_layers: list[str] = []
        if self.feature_kind:
            self._setup_layers(params.get("teacher_layers"), params.get("student_layers"))
        self.adapters = nn.ModuleList()
        if self.needs_adapters:
            self.adapters.extend(make_adapter(self.student_shapes[s], self.teacher_shapes[t])
                                 for s, t in zip(self.student_layers, self.teacher_layers, strict=False))

    # -- set-up -------------------------------------------------------------------------------
    def _check_classes(self) -> int:
        s_out = num_logits(self.student, self.in_shape)
        if self.teacher is not None:
            t_out = num_logits(self.teacher, self.in_shape)
            if t_out != s_out:
                raise ShapeError(f"teacher has {t_out} output classes but student has {s_out}: "
                                 "both must predict the same label set")
        return s_out

    def _setup_layers(self, t_layers: list[str] | None, s_layers: list[str] | None) -> None:
        kind = self.feature_kind or "stages"
        self.student_layers = chosen_layers(self.student, s_layers, kind)
        if self.teacher is not None:
            self.teacher_layers = chosen_layers(self.teacher, t_layers, kind)
            if not (t_layers or s_layers):  # zoo defaults: align the last stages of both
                n = min(len(self.teacher_layers), len(self.student_layers))
                self.teacher_layers, self.student_layers = self.teacher_layers[-n:], self.student_layers[-n:]
            if len(self.teacher_layers) != len(self.student_layers):
                raise ConfigError(f"teacher_layers ({len(self.teacher_layers)}) and student_layers "
                                  f"({len(self.student_layers)}) must pair up one to one")
            self.teacher_shapes = feature_shapes(self.teacher, self.teacher_layers, self.in_shape)
        self.student_shapes = feature_shapes(self.student, self.student_layers, self.in_shape)

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        if self.teacher is not None and not self.trains_teacher:
            self.teacher.eval()
        return self

    def set_progress(self, progress: float) -> None:
        """Called by the trainer before each step with the fraction of training done, in [0, 1]."""
        self.progress = float(progress)

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """What the optimiser updates: student, adapters, method heads (and the teacher if online)."""
        return (p for p in self.parameters() if p.requires_grad)

    # -- forward passes ----------------------------------------------------------------------
    @torch.no_grad()
    def teacher_forward(self, x: torch.Tensor) -> TeacherOutput:
        """Teacher logits and tapped features, without gradients (cacheable per sample)."""
        if self.teacher is None:
            return TeacherOutput(torch.empty(0, device=x.device))
        with FeatureTaps(self.teacher, self.teacher_layers, clone=True, detach=True) as taps:
            logits = self.teacher(x)
            return TeacherOutput(logits.detach(), taps.pop())

    def student_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not self.student_layers:
            return self.student(x), {}
        with FeatureTaps(self.student, self.student_layers, clone=True) as taps:
            logits = self.student(x)
            return logits, taps.pop()

    def forward_train(self, x: torch.Tensor, y: torch.Tensor,
                      teacher_out: TeacherOutput | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One training step's forward: ``(student_logits, {term: weighted loss})``."""
        if teacher_out is None and self.uses_teacher and not self.trains_teacher:
            teacher_out = self.teacher_forward(x)
        logits, feats = self.student_forward(x)
        return logits, self.losses(logits, feats, teacher_out, y)

    def losses(self, logits: torch.Tensor, feats: dict[str, torch.Tensor], teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named weighted loss terms for one batch. Subclasses implement."""
        raise NotImplementedError

    def layer_pairs(self, feats: dict[str, torch.Tensor],
                    teacher: TeacherOutput) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(student feature, teacher feature)`` of each tapped layer pair, in order."""
        for s, t in zip(self.student_layers, self.teacher_layers, strict=True):
            yield feats[s], teacher.features[t]

    def ce(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The weighted label cross-entropy term (shared by every method)."""
        return self.hp["ce_weight"] * F.cross_entropy(logits, y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The deployed student's logits."""
        return self.student(x)


def create_distiller(method: str, teacher: nn.Module | None, student: nn.Module, in_shape: Sequence[int],
                     **params: Any) -> Distiller:
    """Build registered ``method`` with validated ``params`` (unknown names/params list valid ones)."""
    entry = METHODS.entry(method, "method")
    values = METHODS.validate(method, params, where=f"method {method!r} params")
    return entry.obj(teacher, student, in_shape, **values)


def list_methods() -> pd.DataFrame:
    """Registered methods: name, summary, parameters, and flags."""
    rows = []
    for row in METHODS.table():
        cls = METHODS.get(row["name"])
        rows.append({**row, "uses_teacher": cls.uses_teacher, "cacheable": cls.cacheable,
                     "features": cls.feature_kind or ""})
    return pd.DataFrame(rows)
