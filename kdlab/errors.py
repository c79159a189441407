"""Errors raised by kdlab: each says what was wrong, where, and what would be valid."""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Issue:
    """One invalid value, as data: where it is, what is wrong, and the valid choices when they are known.

    ``path`` is a tuple of keys (``("method", "params", "temperature")``; list positions are ints); a dotted
    string is split on its dots. ``message`` does not repeat the path. UIs map ``path`` to their widgets.
    """

    path: tuple[str | int, ...]
    message: str
    choices: tuple | None = None

    def __post_init__(self) -> None:
        path = self.path
        if isinstance(path, str):
            path = tuple(p for p in path.split(".") if p)
        object.__setattr__(self, "path", tuple(path))
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    @property
    def where(self) -> str:
        """The path as a dotted string (``method.params.temperature``; ``""`` for the whole object)."""
        return ".".join(str(p) for p in self.path)

    def under(self, *prefix: str | int) -> Issue:
        """This issue seen from a containing object: ``prefix`` joined in front of the path."""
        return Issue((*prefix, *self.path), self.message, self.choices)

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.path else self.message


#: the longest message a kdlab error carries; longer ones keep their start and end (a hostile or huge value
#: in a spec must not make an error message of megabytes)
MAX_MESSAGE = 2000


def brief(value: Any, limit: int = 120) -> str:
    """``repr(value)`` in at most about ``limit`` characters, for quoting user values in messages."""
    if isinstance(value, (list, tuple, dict, set)) and len(value) > limit:  # don't repr a huge container
        return f"<{type(value).__name__} of {len(value)} items>"
    try:
        return shorten(repr(value), limit)
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply>"


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` when it fits in ``limit`` characters, else its start and end around a note of what was left out."""
    if len(text) <= limit:
        return text
    keep = max(limit - 50, 10)
    head, tail = keep * 3 // 4, keep // 4
    return f"{text[:head]} ... ({len(text) - head - tail} characters left out) ... {text[len(text) - tail:]}"


class KdlabError(Exception):
    """Base class of every kdlab error. ``issues`` carries what was wrong as data (may be empty).

    Messages are bounded: one longer than ``MAX_MESSAGE`` characters keeps its start and end."""

    def __init__(self, *args: Any, issues: Sequence[Issue] = ()):
        if args and isinstance(args[0], str):
            args = (shorten(args[0]), *args[1:])
        super().__init__(*args)
        self.issues: tuple[Issue, ...] = tuple(issues)

    @classmethod
    def at(cls, path: str | Sequence[str | int], message: str, choices: Iterable[Any] | None = None) -> Any:
        """The error for one bad value: text ``"path: message"``, with that one ``Issue`` attached."""
        issue = Issue(path if isinstance(path, str) else tuple(path), message,
                      tuple(choices) if choices is not None else None)
        return cls(str(issue), issues=[issue])


class ConfigError(KdlabError, ValueError):
    """A value (spec field, parameter, argument) is invalid; the message names its path, ``issues`` hold
    each bad field's path, message and valid choices as data."""


class UnknownNameError(KdlabError, KeyError):
    """A name (model, dataset, method, tap path, run id) is not known; the message lists valid ones."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ShapeError(KdlabError, ValueError):
    """Tensors or models do not fit together (class counts, feature shapes)."""


class CheckpointError(KdlabError, RuntimeError):
    """A checkpoint is missing, truncated, corrupted or does not match the model."""


class NonFiniteLossError(KdlabError, RuntimeError):
    """Training produced a NaN or infinite loss. The message says which training (the teacher's or the
    student's), names the non-finite loss terms, hints at likely causes (NaN/inf data; parameters such as
    ``method.params.temperature`` or ``optim.lr``) and says where the last good checkpoint is kept, or that
    none was written yet."""


def closest(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """The choices most similar to ``name`` (for 'did you mean' messages)."""
    choices = list(choices)
    near = difflib.get_close_matches(name, choices, n=n, cutoff=0.4)
    return near or [c for c in choices if name.lower() in c.lower()][:n]


def unknown(kind: str, name: str, choices: Iterable[str], where: str | None = None) -> UnknownNameError:
    """Build the error for an unknown ``name`` of ``kind``, listing close and valid choices."""
    choices = sorted(choices)
    near = closest(name, choices) if isinstance(name, str) and len(name) <= 100 else []
    loc = f"{where}: " if where else ""
    hint = f" Did you mean {', '.join(repr(c) for c in near)}?" if near else ""
    shown = ", ".join(choices[:60]) + (" ..." if len(choices) > 60 else "")
    message = f"unknown {kind} {brief(name)}.{hint} Valid: {shown}"
    issue = Issue((where,) if where else (), message, tuple(choices))  # ``where`` may be free text, kept whole
    return UnknownNameError(f"{loc}{message}", issues=[issue])
