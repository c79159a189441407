"""Run one experiment spec end to end: data, teacher (trained once and cached), student, method, trainer,
test evaluation; results written as JSON in the run folder."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.data import ArrayDataset, load, shifted
from kdlab.distill import create_distiller
from kdlab.distill.evaluate import score
from kdlab.distill.trainer import Callback, TrainConfig, Trainer, pick_device
from kdlab.errors import CheckpointError, ConfigError
from kdlab.models import create
from kdlab.models.checkpoints import load_state
from kdlab.models.inference import predict
from kdlab.paths import cache_dir, file_lock
from kdlab.runs.artifacts import RESULTS_FILE, save_predictions
from kdlab.runs.preflight import preflight
from kdlab.runs.spec import ExperimentSpec, ModelSpec, OptimSpec, TeacherSpec, load_spec


@dataclass
class Splits:
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset


@dataclass
class ExperimentResult:
    """What a run produced: metrics of teacher and student, the training history, timings."""

    spec: dict[str, Any]
    teacher: dict[str, float] = field(default_factory=dict)
    student: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "teacher": self.teacher, "student": self.student,
                "history": self.history, "notes": self.notes, "environment": self.environment}


def load_splits(spec: ExperimentSpec) -> Splits:
    """The train/val/test splits the spec names (with its shifts applied)."""
    d = spec.data
    if d.shift:
        shifts = [(s.name, s.severity) for s in d.shift]
        get = lambda split: shifted(d.name, shift=shifts, split=split, seed=spec.seed, **d.params)  # noqa: E731
    else:
        get = lambda split: load(d.name, split=split, seed=spec.seed, **d.params)  # noqa: E731
    return Splits(get("train"), get("val"), get("test"))


def train_config(optim: OptimSpec, seed: int, device: str, amp: bool = False, cache_teacher: bool = True,
                 log_every: int = 10) -> TrainConfig:
    """The trainer's settings from a spec's optimisation section (a cached teacher's outputs are kept on disk by
    content, ``kdlab.distill.teacher_outputs``, so re-runs and a sweep's trials compute them once)."""
    outputs = str(cache_dir("teacher_outputs")) if cache_teacher else None
    return TrainConfig.from_optim(optim, seed=seed, device=device, amp=amp, cache_teacher=cache_teacher,
                                  log_every=log_every, teacher_outputs=outputs)


def build_model(ms: ModelSpec, data: ArrayDataset) -> nn.Module:
    """Create a zoo model for ``data``'s classes and input shape; load ``ms.checkpoint`` when given."""
    model = create(ms.name, data.num_classes, data.in_shape, **ms.params)
    if ms.checkpoint:
        weights = load_state(ms.checkpoint)["model"]
        if any(k.startswith("student.") for k in weights):  # a kdlab run checkpoint: take the student
            weights = _weights_of(weights, "student.")
        _fit(model, weights, ms.checkpoint, ms.name)
    return model


def _weights_of(weights: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def _fit(model: nn.Module, weights: dict[str, Any], where: str, name: str) -> nn.Module:
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"{where}: weights do not fit model {name!r}: {e}") from e
    return model


@dataclass
class RunModels:
    """A finished run rebuilt: its spec, teacher (None without one), student and data splits (models in eval)."""

    spec: ExperimentSpec
    teacher: nn.Module | None
    student: nn.Module
    splits: Splits


def load_models(run_dir: str | os.PathLike[str], checkpoint: str = "last.pt") -> RunModels:
    """Rebuild the teacher and student of the training run in ``run_dir`` from ``checkpoints/<checkpoint>``
    (``last.pt`` holds the weights its test accuracy was measured with) and load its data splits."""
    folder = Path(run_dir)
    results = folder / RESULTS_FILE
    if not results.is_file():
        raise CheckpointError(f"{folder}: no {RESULTS_FILE}; is it a finished kdlab training run?")
    spec = load_spec(json.loads(results.read_text())["spec"])
    if spec.task != "distill":
        raise ConfigError(f"{folder}: a {spec.task} run has no teacher and student models")
    splits = load_splits(spec)
    path = folder / "checkpoints" / checkpoint
    weights = load_state(path)["model"]
    student_w = _weights_of(weights, "student.")
    if not student_w:
        raise CheckpointError(f"{path}: no 'student.*' weights; is it a kdlab run checkpoint?")
    data = splits.train
    student = _fit(create(spec.student.name, data.num_classes, data.in_shape, **spec.student.params), student_w,
                   str(path), spec.student.name)
    teacher = None
    if spec.teacher is not None and (teacher_w := _weights_of(weights, "teacher.")):
        teacher = _fit(create(spec.teacher.name, data.num_classes, data.in_shape, **spec.teacher.params),
                       teacher_w, str(path), spec.teacher.name).eval()
    return RunModels(spec, teacher, student.eval(), splits)


def get_teacher(spec: ExperimentSpec, splits: Splits, device: str,
                callbacks: Sequence[Callback] = ()) -> tuple[nn.Module, dict[str, Any]]:
    """The trained teacher: from its checkpoint, or trained once per (data, teacher) spec and cached
    (``callbacks`` follow its training when it is trained here)."""
    ts: TeacherSpec = spec.teacher  # type: ignore[assignment]
    if ts.checkpoint:
        return build_model(ts, splits.train), {"source": ts.checkpoint}
    key = spec.digest("data", "teacher")
    folder = cache_dir("teachers")
    path = folder / f"{key}.pt"
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    # Separate runs share the cache under a file lock; the ranks of one multi-process run must not
    # lock each other out (they train the teacher together), so they skip the lock.
    with contextlib.nullcontext() if distributed else file_lock(folder / f"{key}.lock"):
        cached = _load_cached_teacher(path, ts, splits.train)
        if cached is not None:
            return cached
        _seed(ts.seed)
        model = create(ts.name, splits.train.num_classes, splits.train.in_shape, **ts.params)
        t0 = time.perf_counter()
        distiller = create_distiller("vanilla", None, model, splits.train.in_shape)
        trainer = Trainer(distiller, train_config(ts.optim, ts.seed, device, amp=spec.amp), callbacks, role="teacher")
        trainer.fit(splits.train, splits.val)
        meta = {"train_time_s": time.perf_counter() - t0}
        if trainer.is_main:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save({"model": model.state_dict(), "meta": meta}, tmp)
            os.replace(tmp, path)
    return model, {**meta, "source": "trained"}


def _load_cached_teacher(path: Path, ts: TeacherSpec, data: ArrayDataset) -> tuple[nn.Module, dict] | None:
    """The cached teacher at ``path``, or None (a broken entry is removed so it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        state = load_state(path)
        model = create(ts.name, data.num_classes, data.in_shape, **ts.params)
        model.load_state_dict(state["model"])
        return model, {**state["meta"], "source": "cache"}
    except (CheckpointError, RuntimeError, KeyError):
        path.unlink(missing_ok=True)
        return None


def _seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def environment(device: str) -> dict[str, str]:
    """Versions and device, recorded with every result."""
    import kdlab

    dev = torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu"
    return {"kdlab": kdlab.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "device": dev, "threads": str(torch.get_num_threads())}


def run_experiment(source: Any, run_dir: str | Path | None = None, callbacks: Sequence[Callback] = (),
                   resume: bool = False, log_every: int = 10,
                   teacher_callbacks: Sequence[Callback] = ()) -> ExperimentResult:
    """Train the spec's student (with its method and teacher) and evaluate teacher and student on test.

    With ``run_dir``, checkpoints go to ``run_dir/checkpoints`` and results to ``run_dir/results.json``;
    ``resume=True`` continues from ``checkpoints/last.pt``. ``teacher_callbacks`` follow the teacher's
    training when it is not cached yet.
    """
    spec = load_spec(source)
    preflight(spec, tracking=False)  # a tracking target never fails the run (see kdlab.runs.tracking)
    device = pick_device(spec.device)
    splits = load_splits(spec)
    teacher, teacher_meta = (get_teacher(spec, splits, device, teacher_callbacks) if spec.teacher is not None
                             else (None, {}))
    _seed(spec.seed)
    student = build_model(spec.student, splits.train)
    distiller = create_distiller(spec.method.name, teacher, student, splits.train.in_shape, **spec.method.params)
    run_dir = Path(run_dir) if run_dir else None
    ckpt_dir = run_dir / "checkpoints" if run_dir else None
    resume_from = ckpt_dir / "last.pt" if (resume and ckpt_dir) else None
    if resume_from is not None and not resume_from.is_file():
        raise CheckpointError(f"cannot resume: {resume_from} does not exist")
    trainer = Trainer(distiller, train_config(spec.optim, spec.seed, device, spec.amp, spec.cache_teacher,
                                              log_every), callbacks, ckpt_dir)
    t0 = time.perf_counter()
    fit = trainer.fit(splits.train, splits.val, resume_from=resume_from)
    train_time = time.perf_counter() - t0
    result = ExperimentResult(spec.to_dict(), history=fit.history, notes=fit.notes,
                              environment=environment(str(trainer.device)))
    dev = trainer.device
    t_test = trainer.teacher_logits(splits.test)
    if teacher is not None:
        tev = score(t_test, splits.test.y)
        val = {f"val/{k.removeprefix('val_')}": v for k, v in (fit.teacher or {}).items()}
        result.teacher = {**teacher_meta, **val, "test/acc": tev.acc, "test/loss": tev.loss}
    s_test = predict(distiller, splits.test, device=dev)  # the deployed model's outputs
    last = score(s_test, splits.test.y, t_test)
    if run_dir is not None and trainer.is_main:  # kept for the per-class, confusion, calibration figures
        save_predictions(run_dir, splits.test.y, s_test, t_test, splits.test.classes, "test")
    student_metrics = {"test/acc": last.acc, "test/loss": last.loss, "train_time_s": train_time,
                       "last": fit.last, "best": fit.best}
    if t_test is not None:
        student_metrics["test/agreement"] = last.agreement
    if fit.best_checkpoint and fit.best.get("epoch") != fit.last.get("epoch"):
        distiller.load_state_dict(load_state(fit.best_checkpoint)["model"])
        best = score(predict(distiller, splits.test, device=dev), splits.test.y, t_test)
        student_metrics["best_weights"] = {"test/acc": best.acc, "test/agreement": best.agreement}
    result.student = student_metrics
    if run_dir is not None and trainer.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / f"{RESULTS_FILE}.tmp"
        tmp.write_text(json.dumps(result.to_dict(), indent=2))
        os.replace(tmp, run_dir / RESULTS_FILE)
    return result
