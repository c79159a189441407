"""The MLflow side of a mirror: one MLflow run per kdlab run, found again by its ``kdlab.run_id`` tag."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from kdlab.errors import ConfigError, shorten
from kdlab.runs.tracking.targets import INSTALL_HINT, check_mlflow_uri, is_file_store, local_path

#: kdlab status -> MLflow run status
STATUS = {"queued": "SCHEDULED", "running": "RUNNING", "completed": "FINISHED", "failed": "FAILED",
          "cancelled": "KILLED", "interrupted": "KILLED"}
#: MLflow's limits per ``log_batch`` call (metrics, params) and on a param value's length
MAX_METRICS, MAX_PARAMS, MAX_PARAM_CHARS = 1000, 100, 6000


def _name(key: str) -> str:
    """``key`` as an MLflow metric/param name: characters MLflow refuses (all but letters, digits, ``_-./ :``)
    become ``_``, so one odd key cannot make a whole batch fail."""
    return re.sub(r"[^\w./\- :]", "_", key)[:250]


def _ms(t: float | None) -> int | None:
    return int(t * 1000) if t else None


class MlflowSink:
    """Writes a kdlab run into experiment ``experiment`` of the MLflow tracking server/store at ``uri``."""

    kind = "mlflow"

    def __init__(self, uri: str, experiment: str = "kdlab"):
        uri = check_mlflow_uri(uri)
        if is_file_store(uri):
            # MLflow 3 refuses its folder store ("maintenance mode") unless this is set; MLflow reads it when it
            # builds the store (lazily, cached per URI, possibly on a later call), so it is set process-wide
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            from mlflow.entities import ViewType
            from mlflow.tracking import MlflowClient
        except ImportError as e:
            raise ConfigError(f"mirroring to MLflow needs MLflow: {INSTALL_HINT}") from e
        self.uri, self.view = uri, ViewType.ACTIVE_ONLY
        self.client = MlflowClient(tracking_uri=uri)
        self.experiment_id = self._experiment(experiment)
        self.run_id: str | None = None

    def __repr__(self) -> str:
        return f"MLflow {self.uri}"

    @property
    def location(self) -> str:
        return f"{self.uri} run {self.run_id}"

    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        db = local_path(self.uri) if self.uri.startswith("sqlite") else None
        where = (db.parent / "mlartifacts").as_uri() if db is not None else None  # next to the database, not cwd
        try:
            return self.client.create_experiment(name, artifact_location=where)
        except Exception:  # created meanwhile by another worker
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def _existing(self, kdlab_id: str) -> list[Any]:
        return self.client.search_runs([self.experiment_id], f"tags.`kdlab.run_id` = '{kdlab_id}'",
                                       run_view_type=self.view)

    def up_to_date(self, rec: Any, seq: int) -> bool:
        """Whether an earlier mirror of ``rec`` holds everything up to metric row ``seq`` and its status."""
        runs = self._existing(rec.id)
        if len(runs) != 1:
            return False
        tags = runs[0].data.tags
        if (tags.get("kdlab.seq"), tags.get("kdlab.status"), tags.get("kdlab.attempt")) != (
                str(seq), rec.status, str(rec.attempt)):
            return False
        self.run_id = runs[0].info.run_id
        return True

    def begin(self, rec: Any, params: dict[str, str], tags: dict[str, str]) -> None:
        """Replace any earlier mirror of ``rec`` (deleted) by a new MLflow run with ``params`` and ``tags``."""
        from mlflow.entities import Param

        for old in self._existing(rec.id):
            self.client.delete_run(old.info.run_id)
        run = self.client.create_run(self.experiment_id, start_time=_ms(rec.started or rec.created),
                                     tags={**tags, "mlflow.runName": rec.name}, run_name=rec.name)
        self.run_id = run.info.run_id
        items = [Param(_name(k), shorten(v, MAX_PARAM_CHARS)) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS):
            self.client.log_batch(self.run_id, params=items[i:i + MAX_PARAMS])

    def log_rows(self, rows: pd.DataFrame) -> None:
        """Log metric rows (``step``, ``key``, ``value``, ``time``) in batches of ``MAX_METRICS``."""
        from mlflow.entities import Metric

        items = [Metric(_name(k), float(v), int(t * 1000), int(s))
                 for s, k, v, t in zip(rows["step"], rows["key"], rows["value"], rows["time"], strict=True)]
        for i in range(0, len(items), MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=items[i:i + MAX_METRICS])

    def end(self, rec: Any, seq: int, step: int, files: list[tuple[Path, str]]) -> None:
        """The run's summary (``summary.json``; numbers also as ``summary/<key>`` metrics at ``step``), its
        files as artifacts, and its status (ended when final)."""
        from mlflow.entities import Metric, RunTag

        summary = rec.summary or {}
        numbers = [Metric(_name(f"summary/{k}"), float(v), _ms(rec.finished) or 0, step) for k, v in summary.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)]
        tags = [RunTag("kdlab.status", rec.status), RunTag("kdlab.seq", str(seq)),
                RunTag("kdlab.attempt", str(rec.attempt))] + ([RunTag("kdlab.error", shorten(rec.error, 5000))]
                                                             if rec.error else [])
        for i in range(0, max(len(numbers), 1), MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=numbers[i:i + MAX_METRICS], tags=tags if i == 0 else [])
        if summary:
            self.client.log_text(self.run_id, json.dumps(summary, indent=2, default=str), "summary.json")
        for path, rel in files:
            folder = str(Path(rel).parent)
            self.client.log_artifact(self.run_id, str(path), None if folder == "." else folder)
        if rec.status in ("completed", "failed", "cancelled", "interrupted"):
            self.client.set_terminated(self.run_id, STATUS[rec.status], end_time=_ms(rec.finished))

    def close(self) -> None:
        pass
