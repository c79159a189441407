"""Teacher and student outputs of a finished run folder, for the per-class, confusion and calibration
figures: ``compute_predictions(run_dir)`` rebuilds both models from the run's checkpoint and writes
``predictions.npz`` next to ``results.json``. torch is imported only when it is called.
"""
from __future__ import annotations

import os
from pathlib import Path

from kdlab.errors import ConfigError
from kdlab.report.runs import Predictions, save_predictions


def compute_predictions(run_dir: str | os.PathLike[str], checkpoint: str = "last.pt", split: str = "test",
                        save: bool = True) -> Predictions:
    """Logits of the run's student and teacher on ``split`` (CPU), from ``run_dir/checkpoints/<checkpoint>``.

    ``last.pt`` holds the weights the results' ``student.test/acc`` was measured with, so the accuracy of
    these logits equals it. With ``save``, also writes ``run_dir/predictions.npz``.
    """
    from kdlab.models.inference import predict
    from kdlab.runs.experiment import load_models

    if split not in ("train", "val", "test"):
        raise ConfigError(f"split: {split!r} is not one of ['train', 'val', 'test']")
    folder = Path(run_dir)
    run = load_models(folder, checkpoint)
    data = getattr(run.splits, split)
    student, teacher = run.student, run.teacher
    preds = Predictions(labels=data.y.numpy(), student=predict(student, data, device="cpu").numpy(),
                        teacher=predict(teacher, data, device="cpu").numpy() if teacher is not None else None,
                        class_names=list(data.classes), split=split)
    if save:
        save_predictions(folder, preds.labels, preds.student, preds.teacher, preds.class_names, split)
    return preds
