"""The ``condense`` job: a dataset-distillation spec (``task: condense``) run end to end, its files in the run folder.

Progress (loss and time per iteration) goes to the store as step metrics; snapshots of the synthetic set
go to ``snapshots/it<NNNNNN>.npz`` every ``snapshot_every`` iterations (for the viewer's slider); the final
set to ``artifacts/synthetic.npz`` and ``artifacts/synthetic_grid.png``; the evaluation (one row per
network) to ``artifacts/condense_eval.json``; the summary to ``results.json`` (test accuracy as the
student's, so run tables and reports read it like any run). A resumed run of a learned method (DM, DataDAM, DC)
continues from its newest snapshot (see ``condense(start=...)``); others start over.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kdlab.condense import CondenseConfig, EvalConfig, SyntheticSet, condense, evaluate_sets, summarize
from kdlab.condense.methods import is_learned
from kdlab.errors import ConfigError
from kdlab.runs.artifacts import RESULTS_FILE
from kdlab.runs.job import Job, JobContext, register_job
from kdlab.runs.spec import load_spec

SNAPSHOT_DIR = "snapshots"
SYNTHETIC_FILE = "synthetic.npz"
GRID_FILE = "synthetic_grid.png"
EVAL_FILE = "condense_eval.json"


def snapshot_path(run_dir: str | os.PathLike[str], iteration: int) -> Path:
    """Where the snapshot at ``iteration`` is written."""
    return Path(run_dir) / SNAPSHOT_DIR / f"it{iteration:06d}.npz"


@dataclass
class CondenseResult:
    """The synthetic set, its evaluation (one row per network) and the run summary."""

    synthetic: SyntheticSet
    evaluation: pd.DataFrame
    summary: dict[str, float] = field(default_factory=dict)


class _Progress:
    """Per-iteration metrics (buffered, a commit every ``flush_every_s``), job progress and snapshots."""

    def __init__(self, ctx: JobContext, iterations: int, flush_every_s: float = 2.0):
        self.ctx, self.iterations = ctx, iterations
        self.rows: list[tuple[int, dict[str, float]]] = []
        self.flush_every_s, self.last = flush_every_s, time.monotonic()

    def __call__(self, it: int, metrics: dict[str, float], snapshot: SyntheticSet | None) -> None:
        if it > 0:
            self.rows.append((it, {f"condense/{k}": v for k, v in metrics.items()}))
        if snapshot is not None and self.ctx.run_dir is not None:
            snapshot.save(snapshot_path(self.ctx.run_dir, it))
        if time.monotonic() - self.last > self.flush_every_s or snapshot is not None:
            self.flush()
            self.ctx.progress(it, self.iterations, f"iteration {it}/{self.iterations}"
                              + (" (snapshot)" if snapshot is not None else ""))

    def flush(self) -> None:
        for it, values in self.rows:
            self.ctx.metrics(it, values)
        self.rows, self.last = [], time.monotonic()


def run_condensation(source: Any, run_dir: str | os.PathLike[str] | None = None, store: Any = None,
                     run_id: str | None = None) -> CondenseResult:
    """Distil the spec's training split, evaluate the set on its test split, write the run folder's files.

    ``store``/``run_id``: where progress and metrics go (the worker passes them); without, it runs quietly.
    The work runs on the CPU (whatever ``device`` says).
    """
    spec = load_spec(source)
    return _condense(JobContext(spec, Path(run_dir) if run_dir is not None else None, "cpu", store, run_id))


@register_job("condense")
class CondenseJob(Job):
    """Dataset distillation (DM, DataDAM, DC/DSA, FYI, herding, random) of a spec with ``task: condense``."""

    resumable = True

    def run(self, ctx: JobContext) -> dict[str, float]:
        return _condense(ctx).summary

    def read(self, run_dir: str | os.PathLike[str]) -> SyntheticSet | None:
        return load_synthetic(run_dir)


def _condense(ctx: JobContext) -> CondenseResult:
    from kdlab.runs.experiment import environment, load_splits

    spec, run_dir = ctx.spec, ctx.run_dir
    if spec.task != "condense" or spec.condense is None:
        raise ConfigError(f"task: run_condensation needs a spec with task: condense, got {spec.task!r}")
    splits = load_splits(spec)
    cfg = CondenseConfig(**spec.condense.params, seed=spec.seed)
    start = None
    snaps = list_snapshots(run_dir) if run_dir is not None and ctx.resume and is_learned(cfg.method) else []
    if snaps and snaps[-1] > 0:
        start = load_snapshot(run_dir, snaps[-1])
        start.meta["iteration"] = snaps[-1]
        if ctx.recording:  # the loss rows after that snapshot are written again
            ctx.store.truncate_metrics(ctx.run_id, snaps[-1])
        ctx.log(f"resuming after iteration {snaps[-1]} (the newest snapshot)")
    elif run_dir is not None:
        shutil.rmtree(run_dir / SNAPSHOT_DIR, ignore_errors=True)  # an earlier attempt's snapshots
    ev = EvalConfig(**spec.condense.evaluation, seed=spec.seed)
    progress = _Progress(ctx, cfg.iterations)
    ctx.log(f"condensing {spec.data.name} ({len(splits.train)} images) with {cfg.method}, IPC {cfg.ipc}, "
            f"{cfg.iterations} iterations")
    syn = condense(splits.train, cfg, progress=progress, start=start)
    progress.flush()
    ctx.progress(cfg.iterations, cfg.iterations + 1, f"evaluating: {ev.n_nets} x {', '.join(ev.models)} trained "
                 f"{ev.epochs} epochs on the set")
    rows = evaluate_sets({"final": syn}, splits.test, ev)
    table = summarize(rows)
    summary: dict[str, float] = {"test/acc": float(table["mean"].iloc[0]), "test/acc_std": float(table["std"].iloc[0]),
                                 "condense/time_s": float(syn.meta["time_s"])}
    for model, r in table.iterrows():
        summary[f"test/acc/{model}"], summary[f"test/acc_std/{model}"] = float(r["mean"]), float(r["std"])
    if syn.meta.get("time_per_iteration_s"):
        summary["condense/time_per_iteration_s"] = float(syn.meta["time_per_iteration_s"])
    if run_dir is not None:
        art = run_dir / "artifacts"
        syn.save(art / SYNTHETIC_FILE)
        syn.save_png(art / GRID_FILE)
        (art / EVAL_FILE).write_text(json.dumps({"rows": rows.to_dict("records"), "config": ev.__dict__ | {
            "ops": list(ev.ops)}}, indent=2, default=str))
        result = {"spec": spec.to_dict(), "teacher": {}, "student": {**summary, "train_time_s": summary[
            "condense/time_s"]}, "history": [], "environment": environment("cpu"),
            "notes": [f"dataset distillation ({cfg.method}, IPC {cfg.ipc}); test accuracy of networks trained "
                      f"only on the synthetic set, mean over {len(rows)} networks"],
            "condense": {"method": cfg.method, "ipc": cfg.ipc, "iterations": syn.meta["iterations"]}}
        tmp = run_dir / f"{RESULTS_FILE}.tmp"
        tmp.write_text(json.dumps(result, indent=2, default=str))
        os.replace(tmp, run_dir / RESULTS_FILE)
    ctx.progress(1, 1, "evaluation: " + ", ".join(f"{m} {r['mean']:.2%} +- {r['std']:.2%}"
                                                  for m, r in table.iterrows()))
    return CondenseResult(syn, rows, summary)


def load_synthetic(run_dir: str | os.PathLike[str]) -> SyntheticSet | None:
    """The final synthetic set of a condensation run folder (None when it has none)."""
    path = Path(run_dir) / "artifacts" / SYNTHETIC_FILE
    return SyntheticSet.load(path) if path.is_file() else None


def list_snapshots(run_dir: str | os.PathLike[str]) -> list[int]:
    """Iterations that have a snapshot in the run folder, ascending (grows while the run goes)."""
    folder = Path(run_dir) / SNAPSHOT_DIR
    if not folder.is_dir():
        return []
    return sorted(int(p.stem[2:]) for p in folder.glob("it*.npz") if p.stem[2:].isdigit())


def load_snapshot(run_dir: str | os.PathLike[str], iteration: int) -> SyntheticSet:
    """The snapshot at ``iteration`` (see ``list_snapshots``)."""
    return SyntheticSet.load(snapshot_path(run_dir, iteration))


def load_evaluation(run_dir: str | os.PathLike[str]) -> pd.DataFrame | None:
    """The evaluation rows (``set, model, net, acc``) of a condensation run folder, or None."""
    path = Path(run_dir) / "artifacts" / EVAL_FILE
    return pd.DataFrame(json.loads(path.read_text())["rows"]) if path.is_file() else None
