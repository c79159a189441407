"""A trainer callback recording teacher-student CKA after every ``every`` epochs (and before training).

``CKARecorder(data, teacher_layers, student_layers)`` computes ``cka_matrix(teacher, student, ...)`` on a
fixed sample of ``data`` and keeps long-format rows (epoch, teacher layer, student layer, cka); with
``path`` it rewrites that JSON file after each record (e.g. ``run_dir/artifacts/cka_epochs.json``), so a
dashboard or report can read it while the run goes on.

It implements the trainer's callback hooks (``kdlab.distill.trainer.Callback``) by their names rather than by
subclassing, so the analysis layer does not import ``kdlab.distill``: any trainer exposing ``distiller``,
``device`` and ``epoch`` can drive it.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kdlab.analysis.cka import cka_matrix
from kdlab.data.base import ArrayDataset
from kdlab.errors import ConfigError
from kdlab.models.taps import chosen_layers

TrainerLike = Any  # a kdlab.distill.trainer.Trainer (duck-typed: .distiller, .device, .epoch)


class CKARecorder:
    """Records minibatch linear CKA of every (teacher layer, student layer) pair over training."""

    def __init__(self, data: ArrayDataset, teacher_layers: Sequence[str] | None = None,
                 student_layers: Sequence[str] | None = None, every: int = 1, max_samples: int = 500,
                 batch_size: int = 250, pool: str = "flatten", path: str | os.PathLike[str] | None = None):
        if every < 1:
            raise ConfigError(f"every: must be >= 1 epoch, got {every}")
        self.data, self.every, self.pool = data, every, pool
        self.max_samples, self.batch_size = max_samples, batch_size
        self.teacher_layers = list(teacher_layers) if teacher_layers else None
        self.student_layers = list(student_layers) if student_layers else None
        self.path = Path(path) if path is not None else None
        self.rows: list[dict[str, Any]] = []

    def _record(self, trainer: TrainerLike, epoch: int) -> None:
        d = trainer.distiller
        if d.teacher is None:
            raise ConfigError("CKARecorder: this distiller has no teacher to compare the student with")
        t_layers = chosen_layers(d.teacher, self.teacher_layers)
        s_layers = chosen_layers(d.student, self.student_layers)
        df = cka_matrix(d.teacher, d.student, self.data, t_layers, s_layers, batch_size=self.batch_size,
                        pool=self.pool, device=trainer.device, max_samples=self.max_samples)
        for a in df.index:
            for b in df.columns:
                self.rows.append({"epoch": epoch, "teacher_layer": a, "student_layer": b, "cka": float(df.loc[a, b])})
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"pool": self.pool, "n_samples": df.attrs["n_samples"], "rows": self.rows}))
            os.replace(tmp, self.path)

    def on_fit_start(self, trainer: TrainerLike) -> None:
        if not any(r["epoch"] == trainer.epoch for r in self.rows):
            self._record(trainer, trainer.epoch)

    def on_step_end(self, trainer: TrainerLike, metrics: dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer: TrainerLike, metrics: dict[str, float]) -> None:
        if trainer.epoch % self.every == 0:
            self._record(trainer, trainer.epoch)

    def on_fit_end(self, trainer: TrainerLike, result: Any) -> None: ...

    def frame(self) -> pd.DataFrame:
        """The records: one row per (epoch, teacher_layer, student_layer)."""
        return pd.DataFrame(self.rows, columns=["epoch", "teacher_layer", "student_layer", "cka"])
