"""Errors raised by kdlab: each says what was wrong, where, and what would be valid."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class KdlabError(Exception):
    """Base class of every kdlab error."""


class ConfigError(KdlabError, ValueError):
    """A value (spec field, parameter, argument) is invalid; the message names its path."""


class UnknownNameError(KdlabError, KeyError):
    """A name (model, dataset, method, tap path, run id) is not known; the message lists valid ones."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ShapeError(KdlabError, ValueError):
    """Tensors or models do not fit together (class counts, feature shapes)."""


class CheckpointError(KdlabError, RuntimeError):
    """A checkpoint is missing, truncated, corrupted or does not match the model."""


class NonFiniteLossError(KdlabError, RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


def closest(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """The choices most similar to ``name`` (for 'did you mean' messages)."""
    choices = list(choices)
    near = difflib.get_close_matches(name, choices, n=n, cutoff=0.4)
    return near or [c for c in choices if name.lower() in c.lower()][:n]


def unknown(kind: str, name: str, choices: Iterable[str], where: str | None = None) -> UnknownNameError:
    """Build the error for an unknown ``name`` of ``kind``, listing close and valid choices."""
    choices = sorted(choices)
    near = closest(name, choices)
    loc = f"{where}: " if where else ""
    hint = f" Did you mean {', '.join(repr(c) for c in near)}?" if near else ""
    shown = ", ".join(choices[:60]) + (" ..." if len(choices) > 60 else "")
    return UnknownNameError(f"{loc}unknown {kind} {name!r}.{hint} Valid: {shown}")
