"""The job contract: every long computation (training, analysis, condensation) is a *job kind* run by a worker.

A kind is registered by name (``@register_job("cka")``) and declares its parameters as ``Param``s, like methods
and models, so the spec, the CLI and the UIs' forms come from one declaration (``train`` and ``condense`` take
the experiment spec instead). It runs as ``run(ctx)`` in a worker process (local, Ray or N processes) with a
``JobContext`` that gives progress, logging, a cancel check, the device and the run folder, and it owns one
artifact format under its run folder with one reader, ``read(run_dir)``. The worker looks kinds up here; the
built-in kinds live in ``kdlab.jobs``, imported by name on first use, so this layer knows no science.
"""
from __future__ import annotations

import importlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdlab.errors import ConfigError
from kdlab.registry import Param, Registry

JOBS = Registry("job kind")
KIND_MODULES = ("kdlab.jobs",)  # imported on first look-up: their import registers the built-in kinds
PLUGINS_ENV = "KDLAB_JOB_MODULES"  # comma-separated modules of the user's own kinds (workers import them too)
SPEC_KINDS = ("train", "condense")  # kinds whose spec is an ExperimentSpec (``task: distill | condense``)
#: kinds whose worker only launches other runs and waits on them (a sweep): they take no slot of the queue, so the
#: runs they launch get the slots
CONTROLLER_KINDS = ("sweep",)
PROGRESS = "progress"  # the metric kind of progress rows (keys ``progress/done``, ``progress/total``)
_loaded: list[bool] = []


class Job:
    """Base of a job kind: ``params`` (declared ``Param``s), ``run(ctx) -> summary`` and ``read(run_dir)``.

    ``resumable`` kinds continue from what their run folder holds when ``ctx.resume`` is set; the others start
    over cleanly (their run folder's artifacts are replaced when they finish).
    """

    name = "job"
    params: dict[str, Param] = {}
    resumable = False

    def check(self, params: Mapping[str, Any], store: Any) -> dict[str, Any]:
        """``params`` as they will run (names resolved to ids), or ConfigError for what they name that ``store``
        lacks; called at launch, before any run exists."""
        return dict(params)

    def title(self, params: Mapping[str, Any]) -> str:
        """A default run name for these parameters."""
        return self.name

    def run(self, ctx: JobContext) -> dict[str, float]:
        """Do the work, writing artifacts under ``ctx.run_dir``; returns the run's summary (numbers)."""
        raise NotImplementedError

    def read(self, run_dir: str | Path) -> Any:
        """The result saved under ``run_dir`` (None when there is none yet)."""
        raise NotImplementedError


def register_job(name: str, **tags: Any) -> Any:
    """Class decorator registering a ``Job`` subclass as kind ``name`` (its ``params`` are declared on it)."""

    def wrap(cls: type[Job]) -> type[Job]:
        cls.name = name
        return JOBS.register(name, **tags)(cls)

    return wrap


def load_kinds() -> None:
    """Import the modules that register the built-in kinds and those named by ``KDLAB_JOB_MODULES`` (once; a
    launch passes ``KDLAB_*`` variables on to its workers, so they see the same kinds)."""
    if not _loaded:
        extra = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
        for module in (*KIND_MODULES, *extra):
            try:
                importlib.import_module(module)
            except ImportError as e:
                raise ConfigError(f"{PLUGINS_ENV}: cannot import job module {module!r}: {e}") from e
        _loaded.append(True)


def get_job(kind: str, where: str = "kind") -> Job:
    """A fresh instance of job kind ``kind``; unknown kinds list the known ones."""
    load_kinds()
    return JOBS.get(kind, where)()


def list_jobs() -> list[dict[str, Any]]:
    """One row per job kind: name, summary, parameter names."""
    load_kinds()
    return JOBS.table()


def kind_of(spec: Mapping[str, Any]) -> str:
    """The job kind of a stored spec (a training spec has none: ``train``, or ``condense`` by its task)."""
    kind = spec.get("kind")
    if kind:
        return str(kind)
    return "condense" if spec.get("task") == "condense" else "train"


@dataclass
class Progress:
    """Where a job stands: ``done`` of ``total`` steps and the last message."""

    done: float = 0.0
    total: float = 0.0
    message: str = ""

    @property
    def fraction(self) -> float:
        return min(1.0, max(0.0, self.done / self.total)) if self.total else 0.0


class JobCancelled(RuntimeError):
    """Raised by ``JobContext.check_cancel`` once a cancel was requested."""


@dataclass
class JobContext:
    """What a job sees while it runs: its spec and parameters, the device, the run folder, and calls that write
    progress, log lines and metrics to the store (no-ops without one: a foreground call)."""

    spec: Any
    run_dir: Path
    device: str = "cpu"
    store: Any = None
    run_id: str | None = None
    resume: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    min_interval_s: float = 0.5
    _step: int = 0
    _last: float = 0.0
    _message: str = ""

    @property
    def params(self) -> dict[str, Any]:
        return dict(getattr(self.spec, "params", {}) or {})

    @property
    def recording(self) -> bool:
        return self.store is not None and self.run_id is not None

    def artifact(self, name: str) -> Path:
        """``<run folder>/artifacts/<name>`` (the folder is created)."""
        folder = self.run_dir / "artifacts"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def progress(self, done: float, total: float, message: str = "") -> None:
        """Record progress (at most every ``min_interval_s`` seconds, always at the end or on a new message)."""
        now = time.monotonic()
        message = str(message)
        final = total and done >= total
        if not (final or message != self._message or now - self._last >= self.min_interval_s):
            return
        self._last = now
        if not self.recording:
            self._message = message
            return
        self._step += 1
        events = [("info", message)] if message and message != self._message else []
        self._message = message
        self.store.add_metrics(self.run_id, [(self._step, None, PROGRESS, "progress/done", float(done), None),
                                             (self._step, None, PROGRESS, "progress/total", float(total), None)],
                               events)

    def log(self, message: str, level: str = "info") -> None:
        if self.recording:
            self.store.add_metrics(self.run_id, [], [(level, str(message))])

    def metrics(self, step: int, values: Mapping[str, float], kind: str = "step") -> None:
        """Record metric rows ``key -> value`` at ``step``."""
        if self.recording:
            self.store.add_metrics(self.run_id, [(int(step), None, kind, k, v, None) for k, v in values.items()])

    def cancelled(self) -> bool:
        """Whether a cancel was requested (workers also get SIGTERM; long loops may check this between steps)."""
        if not self.recording:
            return False
        return bool(self.store.get_run(self.run_id).cancel_requested)

    def check_cancel(self) -> None:
        if self.cancelled():
            raise JobCancelled("cancelled by the user")


def check_kind_params(kind: str, params: Mapping[str, Any] | None, where: str = "params") -> dict[str, Any]:
    """``params`` validated against kind ``kind``'s declared parameters (defaults filled in)."""
    load_kinds()
    if kind in SPEC_KINDS:
        raise ConfigError(f"kind: {kind!r} jobs take an experiment spec (data, teacher, student, method, optim), "
                          "not params")
    return JOBS.validate(kind, params, where)
