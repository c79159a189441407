"""Toolkit-neutral form descriptions built from the registries (one source for both UIs).

``launch_form()`` describes the launcher: which sections (data, teacher, student, method, optim), which
fields each has (from ``Param.describe()``: type, default, range, choices, doc) and how field values
become an ``ExperimentSpec`` dict. The Panel and the ipywidgets launchers only map ``Field`` objects to
widgets; validation (``validate``) runs ``load_spec`` and maps the ``Issue``s its error carries back onto
field paths, so both faces show the same inline messages. The optimisation fields are built from
``kdlab.distill.optim.OPTIM``, the declaration ``OptimSpec`` and ``TrainConfig`` are made from too.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kdlab.errors import Issue, KdlabError

#: registry name of each section whose parameters come from a registry
SECTIONS: dict[str, str] = {"data": "dataset", "teacher": "model", "student": "model", "method": "method"}

#: defaults of the launcher (small enough to train in seconds on a CPU); the other optimisation settings
#: start at ``OPTIM``'s defaults
DEFAULTS: dict[str, Any] = {
    "name": "experiment", "data": "mnist5k", "teacher": "convnet", "student": "mlp", "method": "kd",
    "epochs": 5, "seed": 0, "device": "auto", "teacher_epochs": 4,
}

#: the launcher's own defaults of ``OPTIM`` settings (the others start at the declaration's)
OPTIM_DEFAULTS: dict[str, Any] = {"epochs": DEFAULTS["epochs"]}

#: labels of the optimisation fields that read better than their key
OPTIM_LABELS: dict[str, str] = {"name": "optimiser", "lr": "learning rate"}


@dataclass(frozen=True)
class Field:
    """One form field: ``path`` in the spec (``method.params.temperature``), kind and limits."""

    path: str
    label: str
    kind: str  # "float" | "int" | "bool" | "str" | "choice" | "list"
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    doc: str = ""
    optional: bool = False  # None (empty) is allowed

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]


def registry(section: str) -> Any:
    """The registry that names the choices of ``section`` (data, teacher, student, method)."""
    kind = SECTIONS[section]
    if kind == "dataset":
        from kdlab.data import DATASETS

        return DATASETS
    if kind == "model":
        from kdlab.models import MODELS

        return MODELS
    from kdlab.distill import METHODS

    return METHODS


def choices(section: str) -> list[str]:
    """Registered names a section can pick from."""
    return registry(section).names()


def param_field(path: str, described: Mapping[str, Any]) -> Field:
    """A ``Field`` from one ``Param.describe()`` dict."""
    kind = "choice" if described.get("choices") else str(described.get("type", "str"))
    if kind not in ("float", "int", "bool", "str", "choice", "list"):
        kind = "str"
    return Field(path=path, label=path.rsplit(".", 1)[-1].replace("_", " "), kind=kind,
                 default=described.get("default"), low=described.get("low"), high=described.get("high"),
                 choices=tuple(described["choices"]) if described.get("choices") else None,
                 doc=str(described.get("doc") or ""), optional=described.get("default") is None)


def param_fields(section: str, name: str) -> list[Field]:
    """The fields of ``name``'s declared parameters in ``section`` (``method.params.<p>``, ...)."""
    entry = registry(section).entry(name)
    return [param_field(f"{section}.params.{k}", p.describe()) for k, p in entry.params.items()]


def optim_fields() -> list[Field]:
    """Top-level fields of the launcher: run name, seed, the student's optimisation settings (one per
    ``OPTIM`` entry: optimiser, lr, momentum, weight decay, schedule, epochs, batch size, clipping), teacher
    epochs, device."""
    from kdlab.distill.optim import OPTIM

    optim = []
    for key, p in OPTIM.items():
        f = param_field(f"optim.{key}", p.describe())
        optim.append(replace(f, label=OPTIM_LABELS.get(key, f.label), default=OPTIM_DEFAULTS.get(key, f.default)))
    teacher_epochs = param_field("teacher.optim.epochs", OPTIM["epochs"].describe())
    return [
        Field("name", "run name", "str", DEFAULTS["name"], doc="name shown in the runs table"),
        Field("seed", "seed", "int", DEFAULTS["seed"], 0, None, doc="seed of data split, init and order"),
        *optim,
        replace(teacher_epochs, label="teacher epochs", default=DEFAULTS["teacher_epochs"],
                doc="epochs of the teacher (trained once, then cached)"),
        Field("device", "device", "choice", DEFAULTS["device"], choices=("auto", "cpu", "cuda"),
              doc="where the worker trains"),
    ]


def uses_teacher(method: str) -> bool:
    from kdlab.distill import METHODS

    return bool(getattr(METHODS.get(method), "uses_teacher", True))


@dataclass
class FormState:
    """What a launcher holds: the chosen names and the values of every field (by path)."""

    names: dict[str, str] = field(default_factory=lambda: {s: DEFAULTS[s] for s in SECTIONS})
    values: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)

    def fields(self) -> dict[str, list[Field]]:
        """Every field by section (``run`` for the top-level ones), in display order."""
        out = {"run": optim_fields()}
        for s in SECTIONS:
            out[s] = param_fields(s, self.names[s])
        return out

    def all_fields(self) -> dict[str, Field]:
        return {f.path: f for fs in self.fields().values() for f in fs}

    def value(self, path: str) -> Any:
        f = self.all_fields().get(path)
        return self.values.get(path, f.default if f else None)

    def set_name(self, section: str, name: str) -> None:
        """Pick ``name`` for ``section``; values of the old choice's parameters are dropped."""
        if section not in SECTIONS:
            raise KeyError(f"section {section!r} is not one of {list(SECTIONS)}")
        if name not in registry(section):
            valid = ", ".join(choices(section))
            raise KeyError(f"{section}: {name!r} is not registered; valid: {valid}")
        self.names[section] = name
        prefix = f"{section}.params."
        self.values = {k: v for k, v in self.values.items() if not k.startswith(prefix)}

    def to_spec(self) -> dict[str, Any]:
        """The spec dict these values describe (parameters left at their default are left out)."""
        fields = self.all_fields()
        spec: dict[str, Any] = {"data": {"name": self.names["data"], "params": {}},
                                "student": {"name": self.names["student"], "params": {}},
                                "method": {"name": self.names["method"], "params": {}},
                                "optim": {}, "tags": list(self.tags)}
        if uses_teacher(self.names["method"]):
            spec["teacher"] = {"name": self.names["teacher"], "params": {}, "optim": {}}
        else:
            spec["teacher"] = None
        for path, f in fields.items():
            v = self.values.get(path, f.default)
            if path.startswith(("data.params.", "teacher.params.", "student.params.", "method.params.")) \
                    and path not in self.values:
                continue
            if v is None and f.optional:
                continue
            parts = path.split(".")
            if parts[0] == "teacher" and spec["teacher"] is None:
                continue
            node = spec
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = v
        return spec


def error_map(error: BaseException | Iterable[Issue], known: Mapping[str, Any] | None = None) -> dict[str, str]:
    """``{field path: message}`` from an error's ``issues`` (``load_spec``'s, a registry's) or from issues.

    An issue whose path is not a form field lands on its closest known parent (a section's select for
    ``method.name``, or ``""``, the form), its message prefixed with the rest of its path
    (``name: unknown method 'x' ...``). An error without issues lands on ``""`` whole.
    """
    if isinstance(error, BaseException):
        issues = tuple(getattr(error, "issues", ()))
        if not issues:
            return {"": str(error)} if str(error) else {}
    else:
        issues = tuple(error)
    out: dict[str, str] = {}
    for issue in issues:
        path = issue.where
        key = path
        if known is not None:
            while key and key not in known:
                key = key.rsplit(".", 1)[0] if "." in key else ""
        rest = path[len(key):].lstrip(".")
        msg = f"{rest}: {issue.message}" if rest else issue.message
        out[key] = (out[key] + "; " + msg) if key in out else msg
    return out


def validate(state: FormState) -> tuple[Any, dict[str, str]]:
    """``(ExperimentSpec, {})`` when the form is valid, else ``(None, {field path: message})``."""
    from kdlab.runs.spec import load_spec

    try:
        return load_spec(state.to_spec()), {}
    except KdlabError as e:
        return None, error_map(e, {**state.all_fields(), **dict.fromkeys(SECTIONS)})
    except ValueError as e:  # pragma: no cover - load_spec wraps pydantic errors
        return None, {"": str(e)}


def coerce(f: Field, raw: Any) -> Any:
    """A widget's raw value for ``f`` as the spec expects it (text fields of lists and optionals)."""
    if f.kind == "list":
        if raw in (None, ""):
            return None
        if isinstance(raw, str):
            return [s.strip() for s in raw.split(",") if s.strip()]
        return list(raw)
    if f.optional and raw in (None, ""):
        return None
    if f.kind in ("int", "float") and isinstance(raw, str):
        try:
            return int(raw) if f.kind == "int" else float(raw)
        except ValueError:
            return raw  # load_spec reports it with the field's path
    return raw
