"""Background execution: ``launch`` a spec, watch it through a ``RunHandle``, cancel and resume it.

Reading the store never starts work: scheduling (the queue, dead workers) is ``kdlab.runs.scheduler``'s, and
happens at ``launch``/``resume``, at a worker's exit and in an explicit ``refresh(store)``.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from kdlab.errors import CheckpointError, ConfigError
from kdlab.runs.executors import checkpoint_note, get_executor
from kdlab.runs.job import SPEC_KINDS, Progress, get_job, kind_of
from kdlab.runs.preflight import preflight
from kdlab.runs.scheduler import mark_gone, reconcile, refresh, start_queued
from kdlab.runs.spec import ExperimentSpec, JobSpec, load_job
from kdlab.runs.store import ACTIVE, TERMINAL, RunRecord, Store, open_store

CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "epoch", "global_step")


# ------------------------------------------------------------------------------------------ actions

def check_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a run checkpoint (weights only) and check it holds what resume needs; CheckpointError if not."""
    from kdlab.models.checkpoints import load_state

    state = load_state(path)
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} cannot be resumed from: it lacks {missing}; nothing was changed")
    return state


def cancel_run(store: Store, run_id: str, timeout: float = 10.0) -> str:
    """Stop a run: a queued one is dropped, a running one gets SIGTERM (its worker records ``cancelled`` and
    keeps the last checkpoint) and, if still running after ``timeout`` seconds, is killed. Returns the status."""
    run = store.get_run(run_id)
    if run.status == "queued":
        if store.set_status(run_id, "cancelled", error="cancelled while queued", expect=("queued",)):
            return "cancelled"
        run = store.get_run(run_id)
    if run.status != "running":
        return run.status
    store.update_run(run_id, cancel_requested=True)
    run = store.get_run(run_id)
    ex = get_executor(run.executor)
    ex.stop(store, run)
    store.log(run_id, "cancel requested")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = store.get_run(run_id)
        if run.status != "running":
            start_queued(store)
            return run.status
        alive, reason = ex.alive(store, run)
        if alive is False:
            mark_gone(store, run, reason)
            continue
        time.sleep(0.05)
    ex.stop(store, run, force=True)
    store.set_status(run_id, "cancelled", expect=("running",),
                     error=f"the worker did not stop within {timeout:g} s of the cancel request and was killed; "
                           f"{checkpoint_note(run)}")
    start_queued(store)
    return store.get_run(run_id).status


def resume_run(store: Store, run_id: str) -> str:
    """Queue a failed/cancelled/interrupted run again; its worker continues from ``checkpoints/last.pt``.

    A checkpoint that is truncated or corrupted raises CheckpointError here, changing nothing.
    """
    run = store.get_run(run_id)
    if run.status in ACTIVE:
        raise ConfigError(f"run {run_id} is {run.status}; only a failed, cancelled or interrupted run can be "
                          "resumed")
    if run.status == "completed":
        raise ConfigError(f"run {run_id} is completed; launch a new run to train further")
    last = store.run_dir(run_id) / "checkpoints" / "last.pt"
    kind = kind_of(run.spec)
    if kind not in SPEC_KINDS:
        note = (f"resume requested: the {kind} job continues from what its run folder holds"
                if get_job(kind).resumable else f"resume requested: {kind} jobs start over")
    elif last.exists():
        state = check_checkpoint(last)
        note = f"resume requested: continues after epoch {int(state['epoch'])} (step {int(state['global_step'])})"
    else:
        note = "resume requested: there is no checkpoint, so the run starts over"
    store.update_run(run_id, resume=True, cancel_requested=False)
    if not store.set_status(run_id, "queued", expect=(run.status,), message=note):
        raise ConfigError(f"run {run_id} changed status while resuming; try again")
    refresh(store)
    return store.get_run(run_id).status


def launch(spec: ExperimentSpec | JobSpec | Mapping[str, Any] | str | os.PathLike[str], executor: str = "local",
           store: Store | str | os.PathLike[str] | None = None, name: str | None = None, *,
           tags: Iterable[str] = (), log_every: int = 10) -> RunHandle:
    """Run ``spec`` (a job of any kind: an experiment spec trains, ``{kind: cka, params: {...}}`` analyses, ...)
    in the background and return at once with a ``RunHandle``.

    The spec is validated first (bad specs fail here, naming the field; runs a job names must exist; the device
    and checkpoint files it needs are checked by ``kdlab.runs.preflight``): nothing is recorded for a bad one. The run
    is queued in ``store`` (default: ``KDLAB_HOME``) and starts as soon as ``executor`` has a free slot
    (``local``: at most ``KDLAB_MAX_CONCURRENT`` / ``store.max_concurrent`` runs at once, default 2).
    ``log_every`` sets how often (in optimiser steps) per-step metrics of a training run are recorded.
    """
    ex = get_executor(executor)
    spec = load_job(spec)
    if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 0:
        raise ConfigError(f"log_every: expected a whole number >= 0 (0: no per-step rows), got {log_every!r}")
    store = store if isinstance(store, Store) else open_store(store)
    if isinstance(spec, JobSpec):
        params = get_job(spec.kind).check(spec.params, store)
        spec = JobSpec.model_validate({**spec.to_dict(), "params": params})
    ex.check(spec)
    preflight(spec, local=executor == "local")
    ex.max_concurrent(store)  # a bad KDLAB_MAX_CONCURRENT fails here, before the run is recorded
    options = {"log_every": log_every, "cwd": os.getcwd(),
               "env": {k: v for k, v in os.environ.items() if k.startswith("KDLAB_")}}
    run_id = store.create_run(spec, name, executor=executor, tags=tags, options=options)
    refresh(store)
    return RunHandle(store, run_id)


def submit(kind: str, store: Store | str | os.PathLike[str] | None = None, *, executor: str = "local",
           name: str | None = None, device: str = "auto", tags: Iterable[str] = (), **params: Any) -> RunHandle:
    """Launch a job of ``kind`` with ``params`` (``submit("cka", run=run_id, split="test")``): the Python call
    behind every Compute button. See ``kdlab.runs.job.list_jobs()`` for the kinds and their parameters."""
    return launch({"kind": kind, "params": params, "device": device}, executor, store, name, tags=tags)


# ------------------------------------------------------------------------------------------ the handle

def failure_of(rec: RunRecord) -> str | None:
    """Why the run of ``rec`` did not complete (``"<status>: <error>"``); None while it runs or once it completed."""
    if rec.status in TERMINAL and rec.status != "completed":
        return f"{rec.status}: {rec.error or 'no error recorded'}"
    return None


class RunHandle:
    """A background run: ``status``, ``metrics()``, ``logs()``, ``wait()``, ``cancel()``, ``resume()``.

    Holds no state of its own beyond the store and the id: every read goes to the store.
    """

    def __init__(self, store: Store, run_id: str):
        self.store, self.id = store, run_id

    def __repr__(self) -> str:
        return f"RunHandle({self.id!r}, status={self.status!r})"

    @property
    def run_dir(self) -> Path:
        return self.store.run_dir(self.id)

    @property
    def record(self) -> RunRecord:
        """The run's full record (reconciled first: a dead worker shows as interrupted; nothing is started)."""
        reconcile(self.store)
        return self.store.get_run(self.id)

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def error(self) -> str | None:
        return self.record.error

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def failure(self) -> str | None:
        """Why the run did not complete (``"failed: <error>"``); None while it runs or once it completed."""
        return failure_of(self.record)

    def metrics(self, since_step: int | None = None, **kw: Any) -> pd.DataFrame:
        """Tidy metric rows (see ``Store.metrics``); ``since_step`` for incremental polling."""
        return self.store.metrics(self.id, since_step=since_step, **kw)

    def history(self) -> pd.DataFrame:
        """Epoch metrics, one row per finished epoch."""
        return self.store.history(self.id)

    def logs(self, since_seq: int | None = None) -> pd.DataFrame:
        """The run's log lines (``seq, time, level, message``)."""
        return self.store.logs(self.id, since_seq)

    def output(self, lines: int | None = None) -> str:
        """The worker process's stdout/stderr (``worker.log``), the last ``lines`` lines if given."""
        path = self.run_dir / "worker.log"
        text = path.read_text(errors="replace") if path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:]) if lines else text

    @property
    def kind(self) -> str:
        """The run's job kind (``train``, ``condense``, ``cka``, ...)."""
        return kind_of(self.store.get_run(self.id).spec)

    def progress(self) -> Progress:
        """Where the job stands: ``done`` of ``total`` steps and its last log line."""
        return self.store.progress(self.id)

    def result(self) -> Any:
        """What the job saved, read by its kind's one reader (None until there is something): a training run's
        ``results.json`` as a dict, a cka job's ``CKAResult``, a frequency job's ``FrequencyArtifacts``, ..."""
        return get_job(self.kind).read(self.run_dir)

    def wait(self, timeout: float | None = None, poll: float = 0.25) -> str:
        """Block until the run ends (or ``timeout`` seconds pass: TimeoutError); returns the final status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            refresh(self.store)
            status = self.store.get_run(self.id).status
            if status in TERMINAL:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {self.id} is still {status} after {timeout:g} s")
            time.sleep(poll)

    def cancel(self, timeout: float = 10.0) -> str:
        """Stop the run (see ``cancel_run``); returns the final status."""
        return cancel_run(self.store, self.id, timeout)

    def resume(self) -> RunHandle:
        """Continue a failed/cancelled/interrupted run from its last checkpoint (in the background)."""
        resume_run(self.store, self.id)
        return self
