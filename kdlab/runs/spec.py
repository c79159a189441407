"""The experiment spec: one validated, serialisable object naming data, models, method and optimisation.

Bad specs fail before any work with the path of the bad field (``method.params.temperature: ...``).
"""
from __future__ import annotations

import hashlib
import json
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from kdlab.distill.optim import OPTIM
from kdlab.errors import ConfigError, Issue, KdlabError, brief, closest, shorten
from kdlab.registry import Param


def _registered(registry: Any, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate ``name`` and ``params`` against a registry, as a pydantic value error (a ConfigError: its
    issues, e.g. ``name`` with the registered names as choices, are joined to the section's path)."""
    try:
        registry.entry(name, where="name")
        return registry.validate(name, params, where="params")
    except KdlabError as e:
        raise ConfigError(str(e), issues=e.issues) from None


def check_device(v: str) -> str:
    """``v`` if it names a device kind (``auto`` picks the GPU when there is one), else ValueError."""
    if v not in ("auto", "cpu", "cuda", "mps") and not (v.startswith("cuda:") and v[5:].isdigit()):
        raise ValueError(f"{v!r} is not one of ['auto', 'cpu', 'cuda', 'cuda:N', 'mps']")
    return v


class _Strict(BaseModel):
    """Spec sections: unknown fields fail, no type coercion ("3" is not a number), NaN and inf are refused."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


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

        values = _registered(DATASETS, self.name, self.params)
        n, size = values.get("n_train"), DATASETS.entry(self.name).tags.get("train")
        if n is not None and size is not None and n > size:
            raise ConfigError.at("params.n_train", f"{n} is more than the {size} training samples of "
                                 f"{self.name!r}; valid: 1..{size} (or null for all)")
        for i, s in enumerate(self.shift):
            if s.name not in SHIFTS:
                msg = f"shift {s.name!r} is unknown; valid: {', '.join(SHIFTS.names())}"
                raise ConfigError(msg, issues=[Issue(("shift", i, "name"), msg, tuple(SHIFTS.names()))])
        return self


def spec_field(p: Param) -> tuple[Any, Any]:
    """A pydantic field ``(annotation, FieldInfo)`` from a declared ``Param``: its choices (a ``Literal``) or
    type, optional when the default is None, default, bounds (open ends as gt/lt) and doc."""
    kinds: dict[type, Any] = {list: list[Any], dict: dict[str, Any]}
    ann: Any = Literal[p.choices] if p.choices is not None else kinds.get(p.type, p.type)  # type: ignore[valid-type]
    if p.default is None:
        ann = ann | None
    bounds: dict[str, Any] = {}
    if p.low is not None:
        bounds["gt" if p.low_open else "ge"] = p.low
    if p.high is not None:
        bounds["lt" if p.high_open else "le"] = p.high
    return ann, Field(p.default, description=p.doc, **bounds)


def params_model(name: str, params: Mapping[str, Param], doc: str, base: type[BaseModel] = _Strict) -> Any:
    """A pydantic model (strict: unknown fields fail) with one field per declared ``Param``, in order."""
    fields = {k: spec_field(p) for k, p in params.items()}
    return create_model(name, __base__=base, __doc__=doc, __module__=__name__, **fields)


#: the spec's ``optim`` section: its fields are ``kdlab.distill.optim.OPTIM`` (name, lr, momentum,
#: weight_decay, schedule, epochs, batch_size, grad_clip), declared there once
OptimSpec = params_model("OptimSpec", OPTIM,
                         "Optimisation: optimiser, learning rate, schedule, epochs, batch size, clipping.")


class ModelSpec(_Strict):
    """A zoo model by name with its parameters; ``checkpoint`` loads trained weights (weights_only)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    checkpoint: str | None = None

    @model_validator(mode="after")
    def _known(self) -> ModelSpec:
        from kdlab.models import MODELS

        if ":" in self.name:  # a timm:/torchvision: passthrough: the package's model and plain params
            from kdlab.models.external import check_external

            try:
                check_external(self.name, self.params, where="")
            except KdlabError as e:
                raise ConfigError(str(e), issues=e.issues) from None
        else:
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
                raise ConfigError.at(f"{section}.seed", "set the spec's top-level seed instead")
            try:
                cls(**values)
            except TypeError as e:
                valid = sorted(cls.__dataclass_fields__)
                raise ConfigError.at(section, f"{e}; valid fields: {valid}", valid) from None
            except KdlabError as e:
                raise ConfigError(f"{section}: {e}", issues=[i.under(section) for i in e.issues]
                                  or [Issue(section, str(e))]) from None
        return self


class TrackingSpec(_Strict):
    """Mirror the run to MLflow and/or TensorBoard as it is written (``kdlab.runs.tracking``): ``mlflow`` is a
    tracking URI (a folder, ``file:``, ``sqlite:///``, ``http(s)://``), ``tensorboard`` a folder (one sub-folder
    per run id), ``experiment`` the MLflow experiment; ``checkpoints`` also uploads ``checkpoints/*.pt``."""

    mlflow: str | None = Field(None, min_length=1, max_length=2000)
    tensorboard: str | None = Field(None, min_length=1, max_length=2000)
    experiment: str = Field("kdlab", min_length=1, max_length=200)
    checkpoints: bool = False

    @model_validator(mode="after")
    def _target(self) -> TrackingSpec:
        from kdlab.runs.tracking.targets import MLFLOW_SCHEMES, check_mlflow_uri

        if self.mlflow is None and self.tensorboard is None:
            msg = ("names no target; give `mlflow: URI` and/or `tensorboard: FOLDER` (or leave `tracking` out); "
                   "valid fields: mlflow, tensorboard, experiment, checkpoints")
            raise ConfigError(msg, issues=[Issue((), msg, ("mlflow", "tensorboard"))])
        if self.mlflow is not None:
            try:
                check_mlflow_uri(self.mlflow)
            except KdlabError as e:
                raise ConfigError.at("mlflow", str(e), MLFLOW_SCHEMES) from None
        return self


def _without_tracking(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` without a null ``tracking`` key: specs without one serialise (and hash) as before the field."""
    if d.get("tracking") is None:
        d.pop("tracking", None)
    return d


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
    tracking: TrackingSpec | None = None

    _device = field_validator("device")(classmethod(lambda cls, v: check_device(v)))

    @model_validator(mode="after")
    def _teacher_needed(self) -> ExperimentSpec:
        from kdlab.distill import METHODS

        if self.task == "condense":
            if self.condense is None:
                self.__dict__["condense"] = CondenseSpec()
            self.__dict__["teacher"] = None  # no teacher is trained for a condensation job
            return self
        if self.condense is not None:
            raise ConfigError.at("condense", "only used with task: condense")
        if self.teacher is None and METHODS.get(self.method.name).uses_teacher:
            raise ConfigError.at("teacher", f"method {self.method.name!r} needs a teacher; give one or use "
                                 "a teacher-free method")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        if self.task == "distill":  # distillation specs serialise (and hash) exactly as before the task field
            del d["task"], d["condense"]
        return _without_tracking(d)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def digest(self, *parts: str) -> str:
        """Stable short hash of the spec (or of some of its sections), for cache keys."""
        d = self.to_dict()
        payload = {p: d[p] for p in parts} if parts else d
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


#: at most this many ``path: message`` lines in a spec error (the rest are counted)
MAX_LINES = 12


def _members(ann: Any) -> tuple[Any, ...]:
    return get_args(ann) if get_origin(ann) in (Union, types.UnionType) else (ann,)


def _annotation_at(model: Any, loc: tuple[str | int, ...]) -> Any:
    """The annotation of the field at ``loc`` inside ``model`` (through optionals and lists), or None."""
    ann = model
    for part in loc:
        nxt = None
        for a in _members(ann):
            if isinstance(part, int) and get_origin(a) in (list, tuple) and get_args(a):
                nxt = get_args(a)[0]
            elif isinstance(part, str) and isinstance(a, type) and issubclass(a, BaseModel) and part in a.model_fields:
                nxt = a.model_fields[part].annotation
            if nxt is not None:
                break
        if nxt is None:
            return None
        ann = nxt
    return ann


def _choices_at(model: Any, loc: tuple[str | int, ...], error_type: str) -> tuple | None:
    """Valid choices at ``loc``: a literal's values, or the fields of the model an unknown field is in."""
    if model is None or error_type not in ("literal_error", "extra_forbidden"):
        return None
    if error_type == "literal_error":
        lits = [get_args(a) for a in _members(_annotation_at(model, loc)) if get_origin(a) is Literal]
        return tuple(lits[0]) if lits else None
    parents = [a for a in _members(_annotation_at(model, loc[:-1]))
               if isinstance(a, type) and issubclass(a, BaseModel)]
    return tuple(parents[0].model_fields) if parents else None


def validation_issues(err: ValidationError, model: type[BaseModel] | None = None,
                      title: str = "invalid experiment spec") -> tuple[tuple[Issue, ...], str]:
    """The ``Issue``s of a pydantic ``ValidationError`` and its readable text (``title``, then one
    ``path: message`` line per error): raise ``ConfigError(text, issues=issues)``.

    Errors that validators raised as kdlab errors keep their own issues, with paths joined to the pydantic
    location (``method`` + ``name`` -> ``method.name``, with the registered names as choices); literal
    errors and unknown fields get their valid values as choices when ``model`` (the validated class) is given.
    """
    issues: list[Issue] = []
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        choices = _choices_at(model, loc, e["type"])
        if e["type"] == "extra_forbidden":
            near = closest(str(loc[-1]), choices or ()) if len(str(loc[-1])) <= 100 else []
            msg = ("unknown field" + (f" (did you mean {near[0]!r}?)" if near else "")
                   + (f"; valid: {', '.join(map(str, choices))}" if choices else ""))
        elif e["type"] == "literal_error":
            msg = f"{brief(e['input'])} is not valid; {e['msg'].lower()}"
        elif e["type"].endswith(("_type", "_parsing", "finite_number")):
            msg = f"{msg}, got {brief(e['input'], 60)}"
        cause = (e.get("ctx") or {}).get("error")
        inner = [i.under(*loc) for i in cause.issues] if isinstance(cause, KdlabError) else []
        issues += inner or [Issue(loc, msg, choices)]
        for issue in inner or [Issue(loc, msg)]:  # a validator's kdlab error names its own path below ``loc``
            where = shorten(issue.where, 200)
            lines.append(f"{where}: {issue.message}" if where else issue.message)
    if len(lines) > MAX_LINES:
        lines[MAX_LINES:] = [f"... and {len(lines) - MAX_LINES} more"]
    return tuple(issues), f"{title}:\n  " + "\n  ".join(shorten(line, 400) for line in lines)


def _format(err: ValidationError) -> str:
    """The readable text of a spec's ``ValidationError`` (see ``validation_issues`` for its issues)."""
    return validation_issues(err)[1]


def load_spec(source: str | Path | dict[str, Any] | ExperimentSpec) -> ExperimentSpec:
    """An ``ExperimentSpec`` from a dict, a YAML/JSON file path, or a spec; errors name the field path."""
    if isinstance(source, ExperimentSpec):
        return source
    source = _mapping(source)
    try:
        return ExperimentSpec.model_validate(source)
    except ValidationError as e:
        issues, text = validation_issues(e, ExperimentSpec)
        raise ConfigError(text, issues=issues) from None


#: a spec file larger than this is refused before it is parsed
MAX_SPEC_BYTES = 1 << 20
#: a spec holding more values than this (counting each YAML alias as the values it repeats) is refused
MAX_SPEC_VALUES = 20_000
_EMPTY_HINT = ("a spec names at least what to train, e.g. `student: {name: mlp}` and `method: {name: kd}` "
               "(`kdlab models`, `kdlab methods`, `kdlab datasets` list the names; the README has a full spec)")


def _mapping(source: Any) -> dict[str, Any]:
    """The mapping a spec source holds: a dict as it is, a YAML/JSON file path read; bounded in size."""
    if isinstance(source, (str, Path)):
        source = _read_spec_file(Path(source))
    if not isinstance(source, dict):
        raise ConfigError(f"a spec must be a mapping of fields (name: value), got {type(source).__name__}")
    _check_size(source)
    return source


def _read_spec_file(path: Path) -> Any:
    """The YAML/JSON document in ``path``; a missing, folder, binary, oversized, empty or unparsable file is a
    ConfigError saying which."""
    if path.is_dir():
        raise ConfigError(f"spec file {path} is a folder; give the path of a YAML or JSON spec file")
    try:
        size = path.stat().st_size
    except OSError:
        raise ConfigError(f"spec file {path} does not exist") from None
    if size > MAX_SPEC_BYTES:
        raise ConfigError(f"spec file {path} is {size:,} bytes; a spec is at most {MAX_SPEC_BYTES:,} bytes of "
                          "YAML or JSON")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"spec file {path} is not a text file (no UTF-8 text at byte {e.start}); a spec is "
                          "YAML or JSON text") from None
    except OSError as e:
        raise ConfigError(f"spec file {path} cannot be read: {e.strerror or e}") from None
    try:
        doc = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as e:
        raise ConfigError(f"spec file {path} is not valid YAML/JSON: {shorten(str(e), 600)}") from None
    if doc is None or doc == {}:
        raise ConfigError(f"spec file {path} is empty; {_EMPTY_HINT}")
    return doc


def _check_size(doc: Any) -> None:
    """ConfigError when ``doc`` holds more than ``MAX_SPEC_VALUES`` values (string length counts per 100
    characters), aliases counted each time they are used: the guard against YAML 'billion laughs'."""
    budget = MAX_SPEC_VALUES
    stack = [doc]
    while stack:
        item = stack.pop()
        budget -= 1 + (len(item) // 100 if isinstance(item, str) else 0)
        if budget < 0:
            raise ConfigError(f"the spec holds more than {MAX_SPEC_VALUES:,} values (YAML anchors and aliases "
                              "count each time they are used); a spec is a short list of settings")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


class JobSpec(_Strict):
    """A job of a registered kind other than ``train``/``condense`` (``kdlab.runs.job``): its declared ``params``
    plus what every job has (name, seed, device, resources, tags)."""

    kind: str
    name: str = Field("", max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(0, ge=0)
    device: str = "auto"
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    tags: list[str] = Field(default_factory=list)
    tracking: TrackingSpec | None = None

    _device = field_validator("device")(classmethod(lambda cls, v: check_device(v)))

    @model_validator(mode="after")
    def _known(self) -> JobSpec:
        from kdlab.runs.job import check_kind_params, get_job

        try:
            job = get_job(self.kind, where="kind")
            self.__dict__["params"] = check_kind_params(self.kind, self.params)
            if not self.name:
                self.__dict__["name"] = job.title(self.params)
        except KdlabError as e:
            raise ConfigError(str(e), issues=e.issues) from None
        return self

    def to_dict(self) -> dict[str, Any]:
        return _without_tracking(self.model_dump(mode="json"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


AnySpec = ExperimentSpec | JobSpec


def load_job(source: str | Path | dict[str, Any] | ExperimentSpec | JobSpec) -> ExperimentSpec | JobSpec:
    """The spec of any job: ``kind: train`` (or none) and ``kind: condense`` give an ``ExperimentSpec`` (a
    condensation spec has ``task: condense``), any other registered kind a ``JobSpec``; errors name the field."""
    if isinstance(source, (ExperimentSpec, JobSpec)):
        return source
    source = dict(_mapping(source))
    kind = source.get("kind")
    if kind in (None, "train", "condense"):
        source.pop("kind", None)
        if kind == "condense":
            source.setdefault("task", "condense")
        return load_spec(source)
    try:
        return JobSpec.model_validate(source)
    except ValidationError as e:
        issues, text = validation_issues(e, JobSpec, title=f"invalid {kind} job spec")
        raise ConfigError(text, issues=issues) from None
