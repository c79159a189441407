"""The ``train`` job: an experiment spec (teacher, student, method, optimisation) trained and evaluated.

Metrics go to the store through ``StoreCallback``; progress is one step per epoch (the teacher's epochs first
when it is not cached yet). Its files are today's run folder: ``checkpoints/{last,best}.pt``,
``results.json`` and ``predictions.npz``; ``read`` returns the results. A resumed run continues after the epoch
of ``checkpoints/last.pt`` (metric rows written after that checkpoint are dropped first, so the history has no
duplicates).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdlab.distill.trainer import Callback, Trainer
from kdlab.runs.artifacts import RESULTS_FILE
from kdlab.runs.experiment import ExperimentResult, run_experiment
from kdlab.runs.job import Job, JobContext, register_job
from kdlab.runs.store import StoreCallback


class EpochProgress(Callback):
    """Reports each finished epoch as the job's progress (``phase`` names the model being trained)."""

    def __init__(self, ctx: JobContext, phase: str):
        self.ctx, self.phase = ctx, phase

    def on_fit_start(self, trainer: Trainer) -> None:
        self.ctx.progress(trainer.epoch, trainer.config.epochs, f"{self.phase}: epoch {trainer.epoch}/"
                                                                  f"{trainer.config.epochs}")

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        acc = metrics.get("val/acc")
        shown = f", val/acc {acc:.4f}" if isinstance(acc, float) else ""
        self.ctx.progress(trainer.epoch, trainer.config.epochs,
                          f"{self.phase}: epoch {trainer.epoch}/{trainer.config.epochs}{shown}")


def summary(result: ExperimentResult) -> dict[str, Any]:
    """The numbers the store keeps of a training run: the student's test metrics and the teacher's."""
    out = {k: v for k, v in result.student.items() if isinstance(v, (int, float))}
    out.update({f"teacher/{k}": v for k, v in result.teacher.items()
                if k.startswith("test/") and isinstance(v, (int, float))})
    return out


def prepare_resume(ctx: JobContext) -> bool:
    """Check the checkpoint and trim metric rows written after it; False when there is none (start over)."""
    from kdlab.runs.background import check_checkpoint

    store, run_id = ctx.store, ctx.run_id
    last = ctx.run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        store.truncate_metrics(run_id, -1)
        store.log(run_id, "no checkpoint to resume from: starting over", "warning")
        return False
    state = check_checkpoint(last)  # CheckpointError: the run fails, nothing is overwritten
    step, epoch = int(state["global_step"]), int(state["epoch"])
    dropped = store.truncate_metrics(run_id, step)
    have = set(store.metrics(run_id, kind="epoch")["epoch"].astype(int))
    rows = [(step, epoch, "epoch", k, v, None) for k, v in (state["history"][-1] if state["history"] else {}).items()
            if k != "epoch" and isinstance(v, (int, float))] if epoch and epoch not in have else []
    store.add_metrics(run_id, rows, [("info", f"resuming after epoch {epoch} (step {step}); dropped {dropped} "
                                               "metric rows written after that checkpoint")])
    return True


@register_job("train")
class TrainJob(Job):
    """Train a student with a distillation method (and its teacher, cached) from an experiment spec."""

    resumable = True

    def run(self, ctx: JobContext) -> dict[str, Any]:
        if ctx.recording:
            resume = prepare_resume(ctx) if ctx.resume else False
        else:  # another rank of a multi-process run: it resumes when rank 0 does
            resume = ctx.resume and (ctx.run_dir / "checkpoints" / "last.pt").is_file()
        record = StoreCallback(ctx.store, ctx.run_id) if ctx.recording else None
        callbacks = [record, EpochProgress(ctx, "student")] if record else []
        try:
            result = run_experiment(ctx.spec, ctx.run_dir, callbacks=callbacks, resume=resume,
                                    log_every=int(ctx.options.get("log_every", 10)),
                                    teacher_callbacks=[EpochProgress(ctx, "teacher")] if record else [])
        finally:
            if record is not None:
                _flush(record)
        return summary(result)

    def read(self, run_dir: str | Path) -> dict[str, Any] | None:
        path = Path(run_dir) / RESULTS_FILE
        return json.loads(path.read_text()) if path.is_file() else None


def _flush(record: StoreCallback) -> None:
    """Write what the callback still holds (also when the run fails or is cancelled)."""
    try:
        record.flush()
    except Exception as e:
        print(f"kdlab worker: could not write the last metrics: {e}", flush=True)
