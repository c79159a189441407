"""One run of the store mirrored to MLflow/TensorBoard: the export (all at once) and the live mirror (the same
``Mirror`` stepped every few seconds by a thread of the worker) share this code.

What is mirrored: the spec flattened to dotted params (``method.params.temperature``), tags (``kdlab.run_id``,
``kdlab.kind``, ``kdlab.status``, ...), every metric row of ``store.metrics`` (step rows such as ``train/loss`` and
the per-term losses, epoch rows such as ``val/acc``) at its step and time, except the job's ``progress`` rows
(``progress/done``/``progress/total``, a progress bar rather than a result), then the summary, the run folder's
files (``results.json``, ``artifacts/*``, ``predictions.npz``, ``worker.log``; ``checkpoints/`` only on request)
and the status.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdlab.errors import ConfigError, Issue
from kdlab.runs.job import PROGRESS, kind_of
from kdlab.runs.tracking.targets import TARGETS, mlflow_issues, tensorboard_issues

#: seconds between two polls of the live mirror
POLL_S = 2.0


def flatten(spec: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The spec as dotted keys -> text (``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": "0.1"}``); lists and empty
    mappings as JSON."""
    out: dict[str, str] = {}
    for k, v in spec.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v if isinstance(v, str) else json.dumps(v, default=str)
    return out


def run_files(run_dir: Path, checkpoints: bool = False) -> list[tuple[Path, str]]:
    """The run folder's files as ``(path, relative name)``, without ``checkpoints/`` (unless ``checkpoints``),
    hidden files and unfinished writes (``*.tmp``, ``*.part``)."""
    if not run_dir.is_dir():
        return []
    out = []
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir)
        if (not p.is_file() or p.is_symlink() or any(part.startswith(".") for part in rel.parts)
                or p.suffix in (".tmp", ".part") or (rel.parts[0] == "checkpoints" and not checkpoints)):
            continue
        out.append((p, rel.as_posix()))
    return out


def make_sink(to: str, uri: str, experiment: str = "kdlab") -> Any:
    """The sink that writes to ``to`` (``mlflow``: a tracking URI, ``tensorboard``: a folder)."""
    if to == "mlflow":
        from kdlab.runs.tracking.mlflow_sink import MlflowSink

        return MlflowSink(uri, experiment)
    if to == "tensorboard":
        from kdlab.runs.tracking.tensorboard_sink import TensorBoardSink

        return TensorBoardSink(uri)
    raise ConfigError.at("to", f"{to!r} is not a tracking target; valid: {', '.join(TARGETS)}", TARGETS)


class Mirror:
    """Mirrors run ``run_id`` of ``store`` to ``sinks``: ``begin`` (params, tags), ``sync`` (new metric rows since
    the last call), ``finish`` (last rows, summary, files, status). ``on_error(sink, exc)``: a failing sink is
    reported there and dropped (the live mirror); None: errors raise (the export)."""

    def __init__(self, store: Any, run_id: str, sinks: Iterable[Any], run_dir: Path | None = None,
                 checkpoints: bool = False, on_error: Callable[[Any, BaseException], None] | None = None):
        self.store, self.run_id, self.sinks = store, run_id, list(sinks)
        self.run_dir = Path(run_dir) if run_dir is not None else Path(store.run_dir(run_id))
        self.checkpoints, self.on_error = checkpoints, on_error
        self.seq, self.step, self.rows = 0, 0, 0  # the cursor (last seq read), the last step, rows sent
        self.mark = 0  # seq of the last row forwarded: gone when the run's metrics were truncated

    def _each(self, call: Callable[[Any], Any]) -> None:
        for sink in list(self.sinks):
            try:
                call(sink)
            except Exception as e:
                if self.on_error is None:
                    raise
                self.sinks.remove(sink)
                self.on_error(sink, e)

    def begin(self) -> None:
        rec = self.store.get_run(self.run_id)
        tags = {"kdlab.run_id": rec.id, "kdlab.name": rec.name, "kdlab.kind": kind_of(rec.spec),
                "kdlab.status": rec.status, "kdlab.attempt": str(rec.attempt), "kdlab.tags": ",".join(rec.tags)}
        params = flatten(rec.spec)
        self._each(lambda s: s.begin(rec, params, tags))

    def sync(self) -> int:
        """Forward the metric rows written since the last call; returns how many.

        A resumed run deletes the rows written after its checkpoint (``truncate_metrics``) and logs those steps
        again. Rows are committed in step order, so that happened exactly when the last row forwarded is gone:
        then the targets are begun afresh and every row is forwarded again (no step is mirrored twice)."""
        rows = self.store.metrics(self.run_id, since_seq=self.mark - 1 if self.mark else self.seq)
        if self.mark:
            if rows.empty or int(rows["seq"].iloc[0]) != self.mark:
                self.seq = self.mark = self.step = self.rows = 0
                self.begin()
                return self.sync()
            rows = rows[rows["seq"] > self.seq]
        if rows.empty:
            return 0
        self.seq = int(rows["seq"].iloc[-1])
        rows = rows[rows["kind"] != PROGRESS]
        if len(rows):
            self.mark = int(rows["seq"].iloc[-1])
            self.step = max(self.step, int(rows["step"].max()))
            self._each(lambda s: s.log_rows(rows))
        self.rows += len(rows)
        return len(rows)

    def finish(self) -> None:
        """The last rows, then the summary, the files and the run's current status."""
        self.sync()
        rec = self.store.get_run(self.run_id)
        files = run_files(self.run_dir, self.checkpoints)
        self._each(lambda s: s.end(rec, self.seq, self.step, files))
        self.close()

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:  # closing must not hide what happened before
                pass


@dataclass
class Exported:
    """One run's export: where it went (an MLflow run or a folder), how many metric rows, skipped when the target
    already held all of it."""

    run_id: str
    to: str
    location: str
    rows: int
    skipped: bool


def export_runs(store: Any, run_ids: str | Iterable[str], to: str = "mlflow", uri: str | None = None,
                experiment: str = "kdlab", checkpoints: bool = False) -> list[Exported]:
    """Mirror finished (or running) runs of ``store`` to MLflow or TensorBoard; see the module doc for what.

    ``uri``: the MLflow tracking URI (a folder, ``file:``, ``sqlite:///``, ``http(s)://``; default
    ``MLFLOW_TRACKING_URI``, else ``sqlite:///<store>/mlflow.db``) or the TensorBoard folder (default
    ``<store>/tensorboard``). Exporting a run again does not duplicate it: a target that already holds all of it
    is skipped, else its earlier copy is replaced (the MLflow run with tag ``kdlab.run_id`` is deleted,
    the TensorBoard folder ``<uri>/<run id>`` rewritten). ``checkpoints`` also uploads ``checkpoints/*`` (MLflow).
    """
    from kdlab.runs.store import Store, open_store

    store = store if isinstance(store, Store) else open_store(store)
    if to not in TARGETS:
        raise ConfigError.at("to", f"{to!r} is not a tracking target; valid: {', '.join(TARGETS)}", TARGETS)
    if uri is None:
        uri = ((os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store.root / 'mlflow.db'}") if to == "mlflow"
               else str(store.root / "tensorboard"))
    issues: list[Issue] = (mlflow_issues if to == "mlflow" else tensorboard_issues)(uri, ("uri",))
    if issues:
        raise ConfigError(f"cannot export to {to}:\n  " + "\n  ".join(map(str, issues)), issues=issues)
    ids = [store.resolve(r) for r in ([run_ids] if isinstance(run_ids, str) else run_ids)]
    sink = make_sink(to, uri, experiment)
    out = []
    try:
        for rid in ids:
            rec = store.get_run(rid)
            mirror = Mirror(store, rid, [sink], checkpoints=checkpoints)
            rows = store.metrics(rid)
            last = int(rows["seq"].iloc[-1]) if len(rows) else 0
            if sink.up_to_date(rec, last):
                out.append(Exported(rid, to, sink.location, int((rows["kind"] != PROGRESS).sum()), True))
                continue
            mirror.begin()
            mirror.finish()
            out.append(Exported(rid, to, sink.location, mirror.rows, False))
    finally:
        sink.close()
    return out


class LiveMirror(threading.Thread):
    """The worker's live mirror of a run (``tracking:`` in its spec): opens the targets, then forwards new metric
    rows every ``interval`` s; ``finish()`` (after the run recorded its end) stops it and mirrors the rest. Never
    raises: a failing target is logged to the run as a warning and dropped, and the run goes on."""

    def __init__(self, store: Any, run_id: str, tracking: Any, run_dir: Path, interval: float = POLL_S):
        super().__init__(daemon=True, name=f"kdlab-tracking-{run_id}")
        self.store, self.run_id, self.tracking, self.interval = store, run_id, tracking, interval
        self.halt = threading.Event()
        self.mirror = Mirror(store, run_id, [], run_dir, tracking.checkpoints, on_error=self._failed)

    def _failed(self, sink: Any, e: BaseException) -> None:
        try:
            self.store.log(self.run_id, f"tracking: mirroring to {sink} stopped: {type(e).__name__}: {e}",
                           "warning")
        except Exception:
            pass

    def _open(self) -> None:
        t = self.tracking
        for to, uri in (("mlflow", t.mlflow), ("tensorboard", t.tensorboard)):
            if uri is None:
                continue
            try:
                self.mirror.sinks.append(make_sink(to, uri, t.experiment))
            except Exception as e:
                self._failed(f"{to} {uri}", e)
        self.mirror.begin()

    def run(self) -> None:
        try:
            self._open()
            while not self.halt.wait(self.interval) and self.mirror.sinks:
                self.mirror.sync()
        except Exception as e:  # the store itself failed: nothing more can be mirrored
            self._failed("the run store", e)
            self.mirror.sinks.clear()
        finally:
            self.store.close()

    def finish(self, timeout: float = 60.0) -> None:
        """Stop polling, then mirror the last rows, the summary, the files and the final status."""
        self.halt.set()
        self.join(timeout)
        if self.is_alive():  # stuck in a slow target: leave it rather than race it
            self._failed("the targets", TimeoutError(f"no answer within {timeout:g} s; the final update was skipped"))
            return
        try:
            self.mirror.finish()
        except Exception as e:
            self._failed("the run store", e)


def start_live_mirror(store: Any, run_id: str, spec: Any, run_dir: Path) -> LiveMirror | None:
    """A started ``LiveMirror`` when ``spec`` has a ``tracking`` section, else None; never raises."""
    if getattr(spec, "tracking", None) is None:
        return None
    try:
        live = LiveMirror(store, run_id, spec.tracking, run_dir)
        live.start()
        return live
    except Exception as e:
        store.log(run_id, f"tracking: the mirror could not start: {e}", "warning")
        return None
