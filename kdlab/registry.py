"""Registries by name (the timm pattern): named objects with declared, validated parameters."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kdlab.errors import ConfigError, brief, unknown


@dataclass(frozen=True)
class Param:
    """One declared parameter: type, default, allowed range or choices, and a one-line doc."""

    default: Any
    doc: str
    type: type = float
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    low_open: bool = False  # ``low`` itself is not allowed (value > low)
    high_open: bool = False  # ``high`` itself is not allowed (value < high)

    def check(self, value: Any, where: str) -> Any:
        """Return ``value`` coerced to this type, or raise ConfigError naming ``where`` (its ``issues`` hold
        one ``Issue`` at ``where`` with this parameter's choices)."""
        if value is None and self.default is None:
            return None
        if self.choices is not None:
            if value not in self.choices:
                raise ConfigError.at(where, f"{brief(value)} is not one of {list(self.choices)}", self.choices)
            return value
        if self.type is bool:
            if not isinstance(value, bool):
                raise ConfigError.at(where, f"expected true/false, got {brief(value)}")
            return value
        if self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError.at(where, f"expected a {self.type.__name__}, got {brief(value)}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError.at(where, f"expected a finite {self.type.__name__}, got {value!r}")
            if self.type is int and isinstance(value, float) and not value.is_integer():
                raise ConfigError.at(where, f"expected an integer, got {value!r}")
            try:
                value = self.type(value)
            except OverflowError:
                raise ConfigError.at(where, f"{brief(value)} is too large; valid: {self.range_text()}") from None
            if not self.in_range(value):
                raise ConfigError.at(where, f"{brief(value)} is outside {self.range_text()}")
            return value
        if self.type is list and isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, self.type):
            raise ConfigError.at(where, f"expected {self.type.__name__}, got {type(value).__name__} {brief(value)}")
        return value

    def in_range(self, value: float) -> bool:
        """Whether ``value`` lies within ``low``/``high`` (open ends excluded)."""
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def range_text(self) -> str:
        """The range in interval notation: ``[0.05, 100.0]``, ``(0.0, 10.0]``."""
        return f"{'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"

    def describe(self) -> dict[str, Any]:
        """A plain dict (for tables and UI forms)."""
        return {"type": self.type.__name__, "default": self.default, "low": self.low, "high": self.high,
                "low_open": self.low_open, "high_open": self.high_open,
                "choices": list(self.choices) if self.choices else None, "doc": self.doc}


@dataclass
class Entry:
    """A registered object with its declared parameters and a one-line summary."""

    name: str
    obj: Any
    params: dict[str, Param] = field(default_factory=dict)
    doc: str = ""
    tags: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Names to objects, with parameter validation: ``register``, ``get``, ``names``, ``validate``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str | None = None, params: Mapping[str, Param] | None = None,
                 **tags: Any) -> Callable[[Any], Any]:
        """Decorator registering ``obj`` under ``name``; params default to ``obj.params`` when declared."""

        def wrap(obj: Any) -> Any:
            key = name or obj.__name__.lower()
            if key in self._entries:
                raise ConfigError(f"{self.kind} {key!r} is registered twice")
            declared = dict(params if params is not None else getattr(obj, "params", {}))
            doc = (obj.__doc__ or "").strip().splitlines()[0] if obj.__doc__ else ""
            self._entries[key] = Entry(key, obj, declared, doc, dict(tags))
            return obj

        return wrap

    def entry(self, name: str, where: str | None = None) -> Entry:
        """The entry for ``name``; unknown names fail listing the known ones."""
        if name not in self._entries:
            raise unknown(self.kind, name, self._entries, where)
        return self._entries[name]

    def get(self, name: str, where: str | None = None) -> Any:
        return self.entry(name, where).obj

    def names(self) -> list[str]:
        return sorted(self._entries)

    def in_order(self) -> list[str]:
        """Names in the order they were registered."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def validate(self, name: str, values: Mapping[str, Any] | None, where: str = "params") -> dict[str, Any]:
        """Declared defaults overlaid with ``values``; unknown keys and bad values raise ConfigError."""
        entry = self.entry(name, where)
        values = dict(values or {})
        extra = sorted(set(values) - set(entry.params))
        if extra:
            valid = ", ".join(sorted(entry.params)) or "(none)"
            raise ConfigError.at(f"{where}.{extra[0]}", f"unknown parameter of {self.kind} {name!r}; valid: {valid}",
                                 sorted(entry.params))
        return {k: p.check(values.get(k, p.default), f"{where}.{k}") for k, p in entry.params.items()}

    def table(self) -> list[dict[str, Any]]:
        """One row per entry: name, summary, parameter names, tags."""
        return [{"name": e.name, "doc": e.doc, "params": ", ".join(e.params), **e.tags}
                for e in sorted(self._entries.values(), key=lambda e: e.name)]
