"""What a report is made of: ``RunData``, read from a run folder, a result dict or the run store.

Every source is turned into a ``RunData`` by one small function, so a new source (the run store today,
anything else later) is a thin resolver:

- ``load_run(folder)``: a run folder holding ``results.json`` (what ``run_experiment(run_dir=...)`` and the
  worker write), or the path of a ``results.json``; ``predictions.npz`` next to it (or under
  ``artifacts/``) adds the per-class, confusion and calibration figures (see ``save_predictions``);
- ``load_run(result_dict)``: ``ExperimentResult.to_dict()`` (optionally with ``name`` and ``predictions``);
- ``run_from_store(store, run_id)``: a run of the run store by id, id prefix or name.

Only numpy, pandas and the standard library are used here (no torch).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from kdlab.errors import ConfigError
from kdlab.runs.artifacts import PREDICTIONS_FILE, RESULTS_FILE, as_array, save_predictions  # noqa: F401


@dataclass
class Predictions:
    """Outputs on one evaluation split: ``labels`` (N,), ``student`` and optional ``teacher`` logits
    (N, C) (or predicted classes (N,)), and the class names."""

    labels: np.ndarray
    student: np.ndarray
    teacher: np.ndarray | None = None
    class_names: list[str] | None = None
    split: str = "test"

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> Predictions:
        missing = [k for k in ("labels", "student") if k not in d or d[k] is None]
        if missing:
            raise ConfigError(f"predictions: missing {missing}; needs 'labels' and 'student' "
                              "(optional 'teacher', 'class_names', 'split')")
        names = d.get("class_names")
        teacher = d.get("teacher")
        split = d.get("split", "test")
        return cls(labels=as_array(d["labels"]), student=as_array(d["student"]),
                   teacher=None if teacher is None or np.size(teacher) == 0 else as_array(teacher),
                   class_names=None if names is None or np.size(names) == 0 else [str(c) for c in np.ravel(names)],
                   split=str(np.asarray(split).item()) if np.ndim(split) == 0 else str(split))


@dataclass
class RunData:
    """One run as a report sees it (the fields of ``ExperimentResult.to_dict()`` plus where it came from).

    ``history`` is anything ``kdlab.viz.as_history`` reads (list of per-epoch dicts or a metrics DataFrame).
    """

    name: str
    spec: dict[str, Any] = field(default_factory=dict)
    teacher: dict[str, Any] = field(default_factory=dict)
    student: dict[str, Any] = field(default_factory=dict)
    history: Any = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    predictions: Predictions | None = None
    source: str = ""
    status: str | None = None
    folder: Path | None = None
    analyses: dict[str, Path] = field(default_factory=dict)  # job kind -> folder of its newest completed job

    def artifact_folder(self, kind: str) -> Path | None:
        """Where the artifacts of a ``kind`` analysis of this run are: the newest completed ``kind`` job's folder,
        else the run's own folder (a job run's own artifacts, or ones saved there by hand)."""
        return self.analyses.get(kind, self.folder)

    # -- what the summary table shows ---------------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        """A job run's parameters (``{}`` for a training spec)."""
        return dict(self.spec.get("params") or {})

    @property
    def method(self) -> str | None:
        return (self.spec.get("method") or {}).get("name") or self.params.get("method")

    @property
    def seed(self) -> Any:
        return self.spec.get("seed", self.params.get("seed"))

    @property
    def trains_a_classifier(self) -> bool:
        """Whether the run is a training spec (its history holds accuracy and loss per epoch), not a job kind
        with figures of its own (an ``lm_distill`` run's curves are its section's)."""
        return self.spec.get("kind") in (None, "train")

    def teacher_val_acc(self) -> float | None:
        """The teacher's validation accuracy (the reference line of the accuracy curves)."""
        for k in ("val/acc", "val_acc"):
            v = self.teacher.get(k)
            if isinstance(v, (int, float)):
                return float(v)
        return None


def _num(d: Mapping[str, Any], key: str) -> float | None:
    v = d.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _from_result(d: Mapping[str, Any], name: str | None, source: str) -> RunData:
    if not isinstance(d.get("spec", {}), Mapping):
        raise ConfigError(f"{source}: 'spec' must be a dict")
    spec = dict(d.get("spec") or {})
    preds = d.get("predictions")
    if preds is not None and not isinstance(preds, Predictions):
        preds = Predictions.from_mapping(preds)
    notes = d.get("notes") or []
    return RunData(name=str(name or d.get("name") or spec.get("name") or "run"), spec=spec,
                   teacher=dict(d.get("teacher") or {}), student=dict(d.get("student") or {}),
                   history=d.get("history") if d.get("history") is not None else [],
                   notes=[str(n) for n in (notes if isinstance(notes, (list, tuple)) else [notes])],
                   environment=dict(d.get("environment") or {}), predictions=preds, source=source,
                   status=d.get("status"))


def load_predictions(path: str | os.PathLike[str]) -> Predictions:
    """Read a ``predictions.npz`` written by ``save_predictions`` (no pickles are loaded)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return Predictions.from_mapping({k: z[k] for k in z.files})
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable predictions file ({e})") from e


def load_run(source: Any, name: str | None = None) -> RunData:
    """A ``RunData`` from a run folder / ``results.json`` path, a result dict, or a ``RunData``."""
    if isinstance(source, RunData):
        if name is not None and name != source.name:
            return replace(source, name=str(name))
        return source
    if isinstance(source, Mapping):
        return _from_result(source, name, "result dict")
    if isinstance(source, (str, os.PathLike)):
        return _from_folder(Path(source), name)
    raise ConfigError(f"run: expected a run folder, a results.json path, a result dict or RunData, "
                      f"got {type(source).__name__}")


def _from_folder(path: Path, name: str | None) -> RunData:
    folder, results = (path.parent, path) if path.is_file() else (path, path / RESULTS_FILE)
    if not path.exists():
        raise ConfigError(f"run: {path} does not exist")
    if not results.is_file():
        raise ConfigError(f"run: {folder} has no {RESULTS_FILE} (is the run finished? a run folder is "
                          "what 'kdlab train --run-dir' or the worker writes)")
    try:
        d = json.loads(results.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"run: {results} is not valid JSON ({e})") from e
    if not isinstance(d, Mapping):
        raise ConfigError(f"run: {results} does not hold a result object")
    run = _from_result(d, name, str(folder))
    run.folder = folder
    store_root = folder.parent.parent
    if folder.parent.name == "runs" and (store_root / "store.sqlite").is_file():  # a run folder of a store
        from kdlab.runs.store import Store

        run.analyses = analyses_of(Store(store_root), folder.name)
    if run.predictions is None:
        for p in (folder / PREDICTIONS_FILE, folder / "artifacts" / PREDICTIONS_FILE):
            if p.is_file():
                run.predictions = load_predictions(p)
                break
    return run


def analyses_of(store: Any, run_id: str) -> dict[str, Path]:
    """Job kind -> folder of the newest completed job of that kind that analysed run ``run_id``."""
    out: dict[str, Path] = {}
    try:
        jobs = store.jobs(of=run_id, status="completed")
    except Exception:  # not a run of this store (or an unreadable one): no analyses
        return out
    for rec in jobs:
        kind = str(rec.spec.get("kind"))
        out.setdefault(kind, store.run_dir(rec.id))
    return out


def run_from_store(store: Any, run: str) -> RunData:
    """A run of the run store (by id, unique id prefix or unique name): its folder's results when the run
    finished, else its record and the metrics logged so far (a running run reports its curves)."""
    run_id = store.resolve(run)
    rec = store.get_run(run_id)  # reading never starts queued runs
    folder = Path(rec.run_dir) if rec.run_dir else store.run_dir(run_id)
    if (folder / RESULTS_FILE).is_file():
        data = _from_folder(folder, rec.name)
    else:
        summary = rec.summary or {}
        data = RunData(name=rec.name, spec=dict(rec.spec or {}), student=dict(summary), notes=[],
                       history=store.metrics(run_id), source=f"store:{run_id}")
        if rec.error:
            data.notes.append(f"error: {rec.error}")
        if rec.device or rec.host:
            data.environment = {k: v for k, v in (("host", rec.host), ("device", rec.device)) if v}
    data.status = rec.status
    data.source = f"store:{run_id} ({folder})"
    data.folder = folder
    data.analyses = analyses_of(store, run_id)
    return data


def load_runs(runs: Any) -> list[RunData]:
    """The runs of a report: one source, a list of sources, or a dict ``{display name: source}``.

    Names that repeat get `` (2)``, `` (3)``... appended, so every run has its own label.
    """
    if isinstance(runs, (RunData, str, os.PathLike)):
        items: list[tuple[str | None, Any]] = [(None, runs)]
    elif isinstance(runs, Mapping) and not ({"spec", "history", "student"} & set(runs)):
        items = [(str(k), v) for k, v in runs.items()]
    elif isinstance(runs, Mapping):
        items = [(None, runs)]
    else:
        items = [(None, r) for r in runs]
    out = [load_run(src, name) for name, src in items]
    used: set[str] = set()
    for i, r in enumerate(out):
        label, k = r.name, 1
        while label in used:
            k += 1
            label = f"{r.name} ({k})"
        used.add(label)
        if label != r.name:
            out[i] = replace(r, name=label)
    return out
