"""Toolkit-neutral form descriptions built from the registries (one source for both UIs).

``launch_form()`` describes the launcher: which sections (data, teacher, student, method, optim), which
fields each has (from ``Param.describe()``: type, default, range, choices, doc) and how field values
become an ``ExperimentSpec`` dict. The Panel and the ipywidgets launchers only map ``Field`` objects to
widgets; validation (``validate``) runs ``load_spec`` and maps its errors back onto field paths, so both
faces show the same inline messages.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kdlab.errors import KdlabError

#: registry name of each section whose parameters come from a registry
SECTIONS: dict[str, str] = {"data": "dataset", "teacher": "model", "student": "model", "method": "method"}

#: defaults of the launcher (small enough to train in seconds on a CPU)
DEFAULTS: dict[str, Any] = {
    "name": "experiment", "data": "mnist5k", "teacher": "convnet", "student": "mlp", "method": "kd",
    "epochs": 5, "lr": 0.05, "batch_size": 128, "seed": 0, "device": "auto", "teacher_epochs": 4,
}


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
    """Top-level fields of the launcher: run name, seed, epochs, lr, batch size, teacher epochs, device."""
    return [
        Field("name", "run name", "str", DEFAULTS["name"], doc="name shown in the runs table"),
        Field("seed", "seed", "int", DEFAULTS["seed"], 0, None, doc="seed of data split, init and order"),
        Field("optim.epochs", "epochs", "int", DEFAULTS["epochs"], 1, 10_000, doc="student epochs"),
        Field("optim.lr", "learning rate", "float", DEFAULTS["lr"], 1e-6, 10.0, doc="student learning rate"),
        Field("optim.batch_size", "batch size", "int", DEFAULTS["batch_size"], 1, 65_536, doc="batch size"),
        Field("teacher.optim.epochs", "teacher epochs", "int", DEFAULTS["teacher_epochs"], 1, 10_000,
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


_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*|\(spec\)):\s*(.*)$")


def error_map(message: str, known: Mapping[str, Any] | None = None) -> dict[str, str]:
    """``{field path: message}`` from a ``load_spec`` / registry error text (one ``path: msg`` per line).

    A path that is not a form field is attached to its closest known parent (or to ``""``, the form).
    """
    out: dict[str, str] = {}
    for line in str(message).splitlines():
        m = _LINE.match(line)
        if not m or line.startswith("invalid experiment spec"):
            continue
        path, msg = m.group(1), m.group(2)
        # model validators report "<section>: <sub.path>: message" (e.g. "method: params.temperature: ...")
        nested = _LINE.match(msg)
        while nested and nested.group(1) != "(spec)":
            sub = nested.group(1)
            path = sub if sub.startswith(path + ".") else f"{path}.{sub}"
            msg = nested.group(2)
            nested = _LINE.match(msg)
        key = path
        if known is not None:
            while key and key not in known:
                key = key.rsplit(".", 1)[0] if "." in key else ""
        out[key] = (out[key] + "; " + msg) if key in out else msg
    if not out and message:
        out[""] = str(message)
    return out


def validate(state: FormState) -> tuple[Any, dict[str, str]]:
    """``(ExperimentSpec, {})`` when the form is valid, else ``(None, {field path: message})``."""
    from kdlab.runs.spec import load_spec

    try:
        return load_spec(state.to_spec()), {}
    except KdlabError as e:
        return None, error_map(str(e), {**state.all_fields(), **dict.fromkeys(SECTIONS)})
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
