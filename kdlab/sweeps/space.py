"""The search space of a sweep: experiment-spec fields (dotted paths) and the values each may take.

A space is a mapping ``path -> distribution``: a list is a choice (``method.name: [kd, dkd, dist, nd]``), a mapping
``{low, high, log, step}`` a range (an integer range when the spec field is an integer, e.g. ``optim.epochs`` or
``student.params.width``). Method parameters that only some methods have go under ``method.params`` by method::

    method.name: [kd, dist]
    method.params: {kd: {temperature: {low: 1, high: 8}}, dist: {tau: {low: 1, high: 8}}}
    optim.lr: {low: 0.01, high: 0.2, log: true}

``check_space`` validates every range end and choice against the spec's own validators (the methods', models' and
optimiser's declared ``Param`` bounds) before any trial starts, so a bad space fails naming its field.
"""
from __future__ import annotations

import copy
import itertools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdlab.errors import ConfigError, KdlabError, brief

#: spec fields a sweep does not search (they name the run or where it runs, not the configuration)
NOT_SEARCHABLE = ("name", "task", "tags", "device", "resources", "tracking", "condense")
RANGE_KEYS = ("low", "high", "log", "step")


@dataclass(frozen=True)
class Dim:
    """One searched field: ``path`` in the spec, drawn only when ``method`` (if set) is the trial's method."""

    path: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False
    method: str | None = None

    @property
    def name(self) -> str:
        """The parameter's name in the search engine (per-method fields are prefixed by their method)."""
        return f"{self.method}:{self.path}" if self.method else self.path

    def grid(self) -> list[Any]:
        """Every value of this field a grid search tries (choices, or the range by its step)."""
        if self.choices is not None:
            return list(self.choices)
        if self.step is None:
            raise ConfigError.at(f"space.{self.where}", "a grid search needs choices or a step for every range")
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        values = [self.low + i * self.step for i in range(n)]
        return [int(round(v)) for v in values] if self.integer else [round(v, 12) for v in values]

    @property
    def where(self) -> str:
        return f"method.params.{self.method}.{self.path.rsplit('.', 1)[-1]}" if self.method else self.path


@dataclass(frozen=True)
class Space:
    """A validated search space: its fields in drawing order (``method.name`` first) and the raw mapping."""

    dims: tuple[Dim, ...]
    raw: dict[str, Any]

    @property
    def methods(self) -> tuple | None:
        """The methods searched over (None when the method is fixed by the base spec)."""
        return next((d.choices for d in self.dims if d.path == "method.name"), None)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Draw one configuration with an Optuna ``trial`` (define-by-run: a method's own fields only when that
        method is drawn); returns ``{spec path: value}``."""
        values: dict[str, Any] = {}
        for d in self.dims:
            if d.method is not None and values.get("method.name") != d.method:
                continue
            if d.choices is not None:
                values[d.path] = trial.suggest_categorical(d.name, list(d.choices))
            elif d.integer:
                values[d.path] = trial.suggest_int(d.name, int(d.low), int(d.high), step=int(d.step or 1), log=d.log)
            else:
                values[d.path] = trial.suggest_float(d.name, d.low, d.high, step=d.step, log=d.log)
        return values

    def values_of(self, engine_params: Mapping[str, Any]) -> dict[str, Any]:
        """``{spec path: value}`` from the engine's parameter names (``kd:method.params.temperature``)."""
        by_name = {d.name: d.path for d in self.dims}
        return {by_name[k]: v for k, v in engine_params.items() if k in by_name}

    def engine_params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The engine's parameter names for ``{spec path: value}`` (the inverse of ``values_of``)."""
        method = values.get("method.name")
        out = {}
        for d in self.dims:
            if d.path in values and (d.method is None or d.method == method):
                out[d.name] = values[d.path]
        return out

    def grid(self) -> list[dict[str, Any]]:
        """Every configuration of a grid search, as ``{spec path: value}`` (per method when the method varies)."""
        shared = [d for d in self.dims if d.method is None and d.path != "method.name"]
        methods = self.methods or (None,)
        out = []
        for m in methods:
            dims = shared + [d for d in self.dims if d.method == m and m is not None]
            for combo in itertools.product(*(d.grid() for d in dims)):
                values = {"method.name": m} if m is not None else {}
                values.update({d.path: v for d, v in zip(dims, combo, strict=True)})
                out.append(values)
        return out


def _set(spec: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node = spec
    for k in keys[:-1]:
        nxt = node.get(k)
        if not isinstance(nxt, dict):
            nxt = node[k] = {}
        node = nxt
    node[keys[-1]] = value


def _get(spec: Mapping[str, Any], path: str) -> Any:
    node: Any = spec
    for k in path.split("."):
        node = node[k]
    return node


def apply_values(base: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The base spec with ``{spec path: value}`` set; a trial of another method than the base's starts from that
    method's defaults (the base's method parameters belong to the base's method)."""
    spec = copy.deepcopy(dict(base))
    method = values.get("method.name")
    if method is not None and method != (spec.get("method") or {}).get("name", "kd"):
        spec["method"] = {"name": method, "params": {}}
    elif method is not None:  # the base's method: its parameters stay
        spec["method"] = {"name": method, "params": {}, **{k: v for k, v in (spec.get("method") or {}).items()
                                                           if k != "name"}}
    for path, value in values.items():
        if path != "method.name":
            _set(spec, path, value)
    return spec


def _mapping(source: Any, what: str) -> dict[str, Any]:
    if isinstance(source, (str, os.PathLike)):
        from kdlab.runs.spec import _read_spec_file

        source = _read_spec_file(Path(source))
    if not isinstance(source, Mapping):
        raise ConfigError(f"{what}: expected a mapping of spec fields to values, got {type(source).__name__}")
    return dict(source)


def _dim(path: str, value: Any, method: str | None = None) -> Dim:
    where = f"space.method.params.{method}.{path.rsplit('.', 1)[-1]}" if method else f"space.{path}"
    if isinstance(value, (list, tuple)):
        if not value:
            raise ConfigError.at(where, "an empty list of choices; give at least one value")
        if len({repr(v) for v in value}) < len(value):
            raise ConfigError.at(where, f"choices repeat a value: {brief(list(value))}")
        return Dim(path, choices=tuple(value), method=method)
    if not isinstance(value, Mapping):
        raise ConfigError.at(where, f"expected a list of choices or a range {{low, high, log, step}}, got "
                             f"{brief(value)}")
    bad = [k for k in value if k not in RANGE_KEYS]
    if bad:
        raise ConfigError.at(where, f"unknown range key(s) {bad}; valid: {list(RANGE_KEYS)}", RANGE_KEYS)
    for key in ("low", "high"):
        v = value.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError.at(where, f"{key}: expected a finite number, got {brief(v)}")
    low, high, log, step = value["low"], value["high"], value.get("log", False), value.get("step")
    if not isinstance(log, bool):
        raise ConfigError.at(where, f"log: expected true/false, got {brief(log)}")
    if low >= high:
        raise ConfigError.at(where, f"low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ConfigError.at(where, f"a log range needs low > 0, got {low}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0):
        raise ConfigError.at(where, f"step: expected a number > 0, got {brief(step)}")
    if step is not None and log:
        raise ConfigError.at(where, "a range is either log or stepped, not both")
    return Dim(path, low=low, high=high, log=log, step=step, method=method)


def parse_space(source: Any) -> Space:
    """The dims of a space mapping (or YAML/JSON file), checked for form only (``check_space`` checks values)."""
    raw = _mapping(source, "space")
    if not raw:
        raise ConfigError.at("space", "the space is empty; give at least one field to search, e.g. "
                             "`method.params.temperature: {low: 1, high: 8}`")
    dims: list[Dim] = []
    for path, value in raw.items():
        path = str(path)
        top = path.split(".")[0]
        if top in NOT_SEARCHABLE:
            raise ConfigError.at(f"space.{path}", f"{top!r} is not a configuration to search; searchable: data, "
                                 "teacher, student, method, optim, seed, amp, cache_teacher")
        if path == "method.params" and isinstance(value, Mapping):
            for method, fields in value.items():
                if not isinstance(fields, Mapping) or not fields:
                    raise ConfigError.at(f"space.method.params.{method}", "expected a non-empty mapping of that "
                                         "method's parameters to choices or ranges")
                dims += [_dim(f"method.params.{k}", v, str(method)) for k, v in fields.items()]
        else:
            dims.append(_dim(path, value))
    dims.sort(key=lambda d: d.path != "method.name")  # the method is drawn first: other fields may depend on it
    return Space(tuple(dims), raw)


def _validated(spec: dict[str, Any]) -> dict[str, Any]:
    from kdlab.runs.spec import load_spec

    return load_spec(spec).to_dict()


def check_space(source: Any, base_spec: Mapping[str, Any]) -> Space:
    """Parse the space and try every range end and choice in the base spec (ConfigError naming ``space.<field>``
    and what the spec says is wrong); integer spec fields get integer ranges. Nothing runs."""
    space = parse_space(source)
    base = dict(base_spec)
    try:
        _validated(base)
    except KdlabError as e:
        raise ConfigError(f"spec: the sweep's base spec is invalid: {e}", issues=e.issues) from None
    methods = space.methods
    per_method = {d.method for d in space.dims if d.method is not None}
    if per_method and methods is None:
        fixed = (base.get("method") or {}).get("name", "kd")
        extra = sorted(per_method - {fixed})
        if extra:
            raise ConfigError.at("space.method.params", f"parameters for method(s) {extra} but the method is "
                                 f"fixed to {fixed!r}; add `method.name: [...]` to the space")
    elif methods is not None and per_method - set(methods):
        bad = sorted(per_method - set(methods))
        raise ConfigError.at("space.method.params", f"method(s) {bad} are not among method.name's choices "
                             f"{list(methods)}")
    dims = []
    for d in space.dims:
        candidates: list[Any] = [None]
        if d.path.startswith("method.params.") and d.method is None and methods is not None:
            candidates = list(methods)  # a shared method field must exist for every method searched
        elif d.method is not None:
            candidates = [d.method]
        ends = list(d.choices) if d.choices is not None else [d.low, d.high]
        integer = False
        for m in candidates:
            for v in ends:
                values = {d.path: v, **({"method.name": m} if m is not None else {})}
                try:
                    checked = _validated(apply_values(base, values))
                except KdlabError as e:
                    lines = str(e).splitlines()
                    detail = "; ".join(line.strip() for line in lines[1:]) if len(lines) > 1 else str(e)
                    who = f" (method {m!r})" if m is not None and d.method is None else ""
                    raise ConfigError.at(f"space.{d.where}", f"{brief(v)}{who} is not valid: {detail}") from None
                if d.choices is None:
                    integer = isinstance(_get(checked, d.path), int) and not isinstance(_get(checked, d.path), bool)
        dims.append(Dim(d.path, d.choices, d.low, d.high, d.log, d.step, integer, d.method))
    return Space(tuple(dims), space.raw)
