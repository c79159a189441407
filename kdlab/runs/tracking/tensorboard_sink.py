"""The TensorBoard side of a mirror: event files in ``<folder>/<run id>/``, rewritten when a run is mirrored anew."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from kdlab.errors import ConfigError
from kdlab.runs.store import check_run_id
from kdlab.runs.tracking.targets import INSTALL_HINT

#: the file in a run's TensorBoard folder that records how far the mirror got (metric seq, status, attempt)
MARKER = "kdlab-mirror.json"


def _table(values: dict[str, Any]) -> str:
    """A markdown table (TensorBoard's text tab renders markdown)."""
    return "| key | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in values.items())


class TensorBoardSink:
    """Writes a kdlab run as TensorBoard scalars (one tag per metric key) and text (params, run, summary, files)."""

    kind = "tensorboard"

    def __init__(self, folder: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ConfigError(f"mirroring to TensorBoard needs TensorBoard: {INSTALL_HINT}") from e
        self._writer_cls = SummaryWriter
        self.root = Path(folder).expanduser().absolute()
        self.folder: Path | None = None
        self.writer: Any = None

    def __repr__(self) -> str:
        return f"TensorBoard {self.root}"

    @property
    def location(self) -> str:
        return str(self.folder)

    def up_to_date(self, rec: Any, seq: int) -> bool:
        """Whether an earlier mirror of ``rec`` holds everything up to metric row ``seq`` and its status."""
        self.folder = self.root / check_run_id(rec.id)
        try:
            mark = json.loads((self.folder / MARKER).read_text())
        except (OSError, ValueError):
            return False
        return mark == {"seq": seq, "status": rec.status, "attempt": rec.attempt}

    def begin(self, rec: Any, params: dict[str, str], tags: dict[str, str]) -> None:
        """Start the run's folder afresh (an earlier mirror is removed) with its params and tags as text."""
        self.close()
        self.folder = self.root / check_run_id(rec.id)
        if self.folder.is_symlink() or self.folder.is_file():
            self.folder.unlink()
        elif self.folder.is_dir():
            shutil.rmtree(self.folder)
        self.writer = self._writer_cls(log_dir=str(self.folder))
        self.writer.add_text("kdlab/params", _table(params), 0)
        self.writer.add_text("kdlab/run", _table(tags), 0)
        self.writer.flush()

    def log_rows(self, rows: pd.DataFrame) -> None:
        """One scalar event per metric row, at its step and wall time."""
        add = self.writer.add_scalar
        for s, k, v, t in zip(rows["step"], rows["key"], rows["value"], rows["time"], strict=True):
            add(k, float(v), int(s), walltime=float(t))
        self.writer.flush()

    def end(self, rec: Any, seq: int, step: int, files: list[tuple[Path, str]]) -> None:
        """The summary (text, numbers also as ``summary/<key>`` scalars at ``step``), the status and the list of
        the run's files as text (TensorBoard holds no files), then the marker."""
        summary = rec.summary or {}
        for k, v in summary.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(f"summary/{k}", float(v), step, walltime=rec.finished)
        if summary:
            self.writer.add_text("kdlab/summary", _table(summary), step)
        status = {"status": rec.status, **({"error": rec.error} if rec.error else {})}
        self.writer.add_text("kdlab/status", _table(status), step)
        if files:
            self.writer.add_text("kdlab/files", "\n".join(f"- `{p}`" for p, _ in files), step)
        self.close()
        mark = {"seq": seq, "status": rec.status, "attempt": rec.attempt}
        (self.folder / MARKER).write_text(json.dumps(mark))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
