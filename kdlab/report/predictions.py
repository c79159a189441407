"""Teacher and student outputs of a finished run folder, for the per-class, confusion and calibration
figures: ``compute_predictions(run_dir)`` rebuilds both models from the run's checkpoint and writes
``predictions.npz`` next to ``results.json``. torch is imported only when it is called.
"""
from __future__ import annotations

import os
from pathlib import Path

from kdlab.errors import CheckpointError, ConfigError
from kdlab.report.runs import Predictions, load_run, save_predictions


def compute_predictions(run_dir: str | os.PathLike[str], checkpoint: str = "last.pt", split: str = "test",
                        save: bool = True) -> Predictions:
    """Logits of the run's student and teacher on ``split`` (CPU), from ``run_dir/checkpoints/<checkpoint>``.

    ``last.pt`` holds the weights the results' ``student.test/acc`` was measured with, so the accuracy of
    these logits equals it. With ``save``, also writes ``run_dir/predictions.npz``.
    """
    from kdlab.distill.evaluate import predict
    from kdlab.distill.trainer import load_state
    from kdlab.models import create
    from kdlab.runs.experiment import load_splits
    from kdlab.runs.spec import load_spec

    if split not in ("train", "val", "test"):
        raise ConfigError(f"split: {split!r} is not one of ['train', 'val', 'test']")
    folder = Path(run_dir)
    run = load_run(folder)
    spec = load_spec(run.spec)
    data = getattr(load_splits(spec), split)
    path = folder / "checkpoints" / checkpoint
    weights = load_state(path)["model"]

    def rebuild(prefix: str, ms) -> object | None:
        w = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        if not w:
            return None
        model = create(ms.name, data.num_classes, data.in_shape, **ms.params)
        try:
            model.load_state_dict(w)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: {prefix.rstrip('.')} weights do not fit model {ms.name!r}: {e}") from e
        return model

    student = rebuild("student.", spec.student)
    if student is None:
        raise CheckpointError(f"{path}: no 'student.*' weights; is it a kdlab run checkpoint?")
    teacher = rebuild("teacher.", spec.teacher) if spec.teacher is not None else None
    preds = Predictions(labels=data.y.numpy(), student=predict(student, data, device="cpu").numpy(),
                        teacher=predict(teacher, data, device="cpu").numpy() if teacher is not None else None,
                        class_names=list(data.classes), split=split)
    if save:
        save_predictions(folder, preds.labels, preds.student, preds.teacher, preds.class_names, split)
    return preds
