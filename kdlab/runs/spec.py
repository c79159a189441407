"""The experiment spec: one validated, serialisable object naming data, models, method and optimisation.

Bad specs fail before any work with the path of the bad field (``method.params.temperature: ...``).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kdlab.distill.optim import OPTIMIZERS, SCHEDULES
from kdlab.errors import ConfigError, KdlabError


def _registered(registry: Any, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate ``name`` and ``params`` against a registry, as pydantic value errors (keeps the path)."""
    try:
        registry.entry(name, where="name")
        return registry.validate(name, params, where="params")
    except KdlabError as e:
        raise ValueError(str(e)) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ShiftSpec(_Strict):
    """One domain shift applied to every split (see ``kdlab.data.shifted``)."""

    name: str
    severity: float = Field(0.5, ge=0.0, le=1.0)


class DataSpec(_Strict):
    """Which dataset, its parameters and optional shifts."""

    name: str = "mnist5k"
    params: dict[str, Any] = Field(default_factory=dict)
    shift: list[ShiftSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known(self) -> DataSpec:
        from kdlab.data import DATASETS
        from kdlab.data.shifts import SHIFTS

        _registered(DATASETS, self.name, self.params)
        for s in self.shift:
            if s.name not in SHIFTS:
                raise ValueError(f"shift {s.name!r} is unknown; valid: {', '.join(SHIFTS.names())}")
        return self


class OptimSpec(_Strict):
    """Optimisation: optimiser, learning rate, schedule, epochs, batch size, clipping."""

    name: Literal[OPTIMIZERS] = "sgd"  # type: ignore[valid-type]
    lr: float = Field(0.05, gt=0.0, le=10.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0, le=1.0)
    schedule: Literal[SCHEDULES] = "cosine"  # type: ignore[valid-type]
    epochs: int = Field(10, ge=1, le=10_000)
    batch_size: int = Field(128, ge=1, le=65_536)
    grad_clip: float | None = Field(None, gt=0.0)


class ModelSpec(_Strict):
    """A zoo model by name with its parameters; ``checkpoint`` loads trained weights (weights_only)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    checkpoint: str | None = None

    @model_validator(mode="after")
    def _known(self) -> ModelSpec:
        from kdlab.models import MODELS

        if ":" not in self.name:  # timm:/torchvision: passthrough names are checked when built
            _registered(MODELS, self.name, self.params)
        return self


class TeacherSpec(ModelSpec):
    """The teacher: loaded from ``checkpoint``, or trained once with ``optim`` and cached."""

    name: str = "convnet"
    optim: OptimSpec = Field(default_factory=lambda: OptimSpec(epochs=8, lr=0.05))
    seed: int = Field(0, ge=0)


class MethodSpec(_Strict):
    """A registered distillation method and its declared parameters."""

    name: str = "kd"
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> MethodSpec:
        from kdlab.distill import METHODS

        self.__dict__["params"] = _registered(METHODS, self.name, self.params)
        return self


class ResourcesSpec(_Strict):
    """What one run needs: processes (DDP), CPUs and GPUs per process (for Ray and the queue)."""

    processes: int = Field(1, ge=1, le=64)
    cpus: float = Field(1.0, gt=0.0)
    gpus: float = Field(0.0, ge=0.0)


class CondenseSpec(_Strict):
    """A dataset-distillation job (``task: condense``): ``kdlab.condense.CondenseConfig`` fields in ``params``
    (its ``seed`` comes from the spec's), ``kdlab.condense.EvalConfig`` fields in ``evaluation``."""

    params: dict[str, Any] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid(self) -> CondenseSpec:
        from kdlab.condense import CondenseConfig, EvalConfig

        for section, cls in (("params", CondenseConfig), ("evaluation", EvalConfig)):
            values = getattr(self, section)
            if "seed" in values:
                raise ValueError(f"{section}.seed: set the spec's top-level seed instead")
            try:
                cls(**values)
            except TypeError as e:
                raise ValueError(f"{section}: {e}; valid fields: {sorted(cls.__dataclass_fields__)}") from None
            except KdlabError as e:
                raise ValueError(f"{section}: {e}") from None
        return self


class ExperimentSpec(_Strict):
    """A whole experiment; the same object runs in the foreground, in the background, on N GPUs or Ray.

    ``task: condense`` makes it a dataset-distillation job (``condense`` section; data, seed, device and
    resources apply, teacher/student/method do not).
    """

    name: str = Field("experiment", min_length=1, max_length=200)
    task: Literal["distill", "condense"] = "distill"
    condense: CondenseSpec | None = None
    seed: int = Field(0, ge=0)
    data: DataSpec = Field(default_factory=DataSpec)
    teacher: TeacherSpec | None = Field(default_factory=TeacherSpec)
    student: ModelSpec = Field(default_factory=lambda: ModelSpec(name="mlp"))
    method: MethodSpec = Field(default_factory=MethodSpec)
    optim: OptimSpec = Field(default_factory=OptimSpec)
    device: str = "auto"
    amp: bool = False
    cache_teacher: bool = True
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    tags: list[str] = Field(default_factory=list)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "cuda", "mps") and not (v.startswith("cuda:") and v[5:].isdigit()):
            raise ValueError(f"{v!r} is not one of ['auto', 'cpu', 'cuda', 'cuda:N', 'mps']")
        return v

    @model_validator(mode="after")
    def _teacher_needed(self) -> ExperimentSpec:
        from kdlab.distill import METHODS

        if self.task == "condense":
            if self.condense is None:
                self.__dict__["condense"] = CondenseSpec()
            self.__dict__["teacher"] = None  # no teacher is trained for a condensation job
            return self
        if self.condense is not None:
            raise ValueError("condense: only used with task: condense")
        if self.teacher is None and METHODS.get(self.method.name).uses_teacher:
            raise ValueError(f"teacher: method {self.method.name!r} needs a teacher; give one or use "
                             "a teacher-free method")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        if self.task == "distill":  # distillation specs serialise (and hash) exactly as before the task field
            del d["task"], d["condense"]
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def digest(self, *parts: str) -> str:
        """Stable short hash of the spec (or of some of its sections), for cache keys."""
        d = self.to_dict()
        payload = {p: d[p] for p in parts} if parts else d
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(spec)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] == "literal_error":
            msg = f"{e['input']!r} is not valid; {e['msg'].lower()}"
        lines.append(f"{loc}: {msg}")
    return "invalid experiment spec:\n  " + "\n  ".join(lines)


def load_spec(source: str | Path | dict[str, Any] | ExperimentSpec) -> ExperimentSpec:
    """An ``ExperimentSpec`` from a dict, a YAML/JSON file path, or a spec; errors name the field path."""
    if isinstance(source, ExperimentSpec):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"spec file {path} does not exist")
        try:
            source = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"spec file {path} is not valid YAML/JSON: {e}") from e
    if not isinstance(source, dict):
        raise ConfigError(f"a spec must be a mapping, got {type(source).__name__}")
    try:
        return ExperimentSpec.model_validate(source)
    except ValidationError as e:
        raise ConfigError(_format(e)) from None
