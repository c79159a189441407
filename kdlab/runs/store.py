"""The run store: the one source of truth for runs (SQLite in WAL mode plus a folder per run).

Layout under the store root (``KDLAB_HOME`` by default)::

    <root>/store.sqlite        runs, metrics, events, settings (WAL: readers never block the writer)
    <root>/runs/<run id>/      checkpoints/, artifacts/, worker.log, results.json

Every process and thread gets its own SQLite connection; writes are short ``BEGIN IMMEDIATE``
transactions with a generous ``busy_timeout``, so concurrent writers queue instead of failing with
"database is locked". Run ids and artifact names match strict patterns, so no path built from them
leaves the store folder.

Metric rows carry the trainer's global optimiser ``step``: per-step rows (``kind="step"``) at the step
they were logged, per-epoch rows (``kind="epoch"``) at the step that closed the epoch. ``StoreCallback``
commits in step order (a commit never holds a step at or below one already committed), so
``metrics(run, since_step=last_seen)`` is a complete incremental poll; ``seq`` (the row id, strictly
increasing in commit order) is an alternative cursor (``since_seq``). Resuming a run replaces the rows
written after its last checkpoint (their steps are logged again) and bumps the run's ``attempt``: a
poller that sees ``attempt`` change should reload.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kdlab.distill.trainer import Callback
from kdlab.errors import ConfigError, KdlabError, unknown
from kdlab.runs.job import CONTROLLER_KINDS, PROGRESS, Progress, kind_of

if TYPE_CHECKING:
    from kdlab.distill.trainer import Trainer, TrainResult
    from kdlab.runs.spec import ExperimentSpec, JobSpec

STATUSES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
TERMINAL = ("completed", "failed", "cancelled", "interrupted")
LEVELS = ("debug", "info", "warning", "error")
DB_NAME = "store.sqlite"
SCHEMA_VERSION = 1
DEFAULT_MAX_CONCURRENT = 2
BUSY_TIMEOUT_MS = 60_000

RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
ARTIFACT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued','running','completed','failed','cancelled','interrupted')),
    executor TEXT NOT NULL DEFAULT 'local',
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    heartbeat REAL,
    host TEXT,
    device TEXT,
    pid INTEGER,
    pid_start REAL,
    error TEXT,
    traceback TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    options TEXT NOT NULL DEFAULT '{}',
    summary TEXT,
    resume INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status, created);
CREATE TABLE IF NOT EXISTS metrics (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    epoch REAL,
    kind TEXT NOT NULL DEFAULT 'step',
    key TEXT NOT NULL,
    value REAL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_run_step ON metrics(run_id, step);
CREATE INDEX IF NOT EXISTS metrics_progress ON metrics(kind, run_id, epoch);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    time REAL NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id, seq);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StoreError(KdlabError, RuntimeError):
    """The run store cannot be opened or written (folder not writable, not a folder, bad database)."""


# ------------------------------------------------------------------------------------------ names

def check_run_id(run_id: Any) -> str:
    """``run_id`` if it is a valid run id (letters, digits, '-' and '_'; no path parts), else ConfigError."""
    if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
        raise ConfigError(f"run id {run_id!r} is invalid: expected 1-64 letters, digits, '-' or '_' starting "
                          "with a letter or digit (no '/', '..', absolute paths or NUL)")
    return run_id


def check_artifact_name(name: Any) -> str:
    """``name`` if it is a valid artifact file name (no folders, no '..', no leading dot), else ConfigError."""
    if not isinstance(name, str) or not ARTIFACT_RE.fullmatch(name) or ".." in name:
        raise ConfigError(f"artifact name {name!r} is invalid: expected a plain file name of 1-128 letters, "
                          "digits, '.', '-' or '_' starting with a letter or digit (no '/', '..', absolute "
                          "paths or NUL)")
    return name


def new_run_id() -> str:
    """A fresh, time-sortable run id such as ``20250101-120000-a1b2c3``."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def _inside(path: Path, root: Path, what: str) -> Path:
    """``path`` resolved, after checking it stays inside ``root`` (catches symlinks pointing out)."""
    real, base = path.resolve(), root.resolve()
    if real != base and base not in real.parents:
        raise ConfigError(f"{what} {path} resolves to {real}, outside the store folder {base}")
    return path


# ------------------------------------------------------------------------------------------ records

@dataclass
class RunRecord:
    """One row of the ``runs`` table (times are unix seconds)."""

    id: str
    name: str
    spec: dict[str, Any]
    status: str
    executor: str
    created: float
    started: float | None
    finished: float | None
    heartbeat: float | None
    host: str | None
    device: str | None
    pid: int | None
    pid_start: float | None
    error: str | None
    traceback: str | None
    tags: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    resume: bool = False
    cancel_requested: bool = False
    attempt: int = 0
    run_dir: Path | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_row(cls, row: sqlite3.Row, run_dir: Path) -> RunRecord:
        d = dict(row)
        for k, default in (("spec", "{}"), ("tags", "[]"), ("options", "{}")):
            d[k] = json.loads(d[k] or default)
        d["summary"] = json.loads(d["summary"]) if d["summary"] else None
        d["resume"], d["cancel_requested"] = bool(d["resume"]), bool(d["cancel_requested"])
        return cls(**d, run_dir=run_dir)


def _json(value: Any) -> str:
    return json.dumps(value, default=str, allow_nan=True)


def _finite_or_none(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------------------------------ the store

class Store:
    """A run store rooted at ``root``: see the module doc. Use ``open_store`` to get one."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().absolute()
        self.runs_dir = self.root / "runs"
        self.db_path = self.root / DB_NAME
        self._local = threading.local()
        self._prepare()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def __reduce__(self):  # pickles as its path: each process opens its own connection
        return (Store, (str(self.root),))

    # -- connection & transactions ---------------------------------------------------------------
    def _prepare(self) -> None:
        """Create the folders and schema; fail with StoreError when the folder cannot be written."""
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe-{os.getpid()}-{secrets.token_hex(4)}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise StoreError(f"run store folder {self.root} is not a writable folder ({e.strerror or e}); "
                             "set KDLAB_HOME or pass open_store(path) to a folder you can write") from e
        try:
            conn = self._conn()
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"run store {self.db_path} has schema version {version}, newer than this "
                                 f"kdlab understands ({SCHEMA_VERSION}); upgrade kdlab")
            if version < SCHEMA_VERSION:  # idempotent, serialised by BEGIN IMMEDIATE across processes
                conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        except sqlite3.Error as e:
            raise StoreError(f"run store database {self.db_path} cannot be opened or written: {e}") from e

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a new one after ``fork``: connections are never shared)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=True)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"run store {self.db_path}: cannot switch SQLite to WAL mode (got {mode!r}); "
                             "is the folder on a network file system?")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their thread or process ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction, taken up front (BEGIN IMMEDIATE) so busy waits use busy_timeout."""
        c = self._conn()
        if c.in_transaction:  # left open by an exception raised between BEGIN and our try (a signal)
            c.execute("ROLLBACK")
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self._conn().execute(sql, args).fetchall()

    def _read_tuples(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        """Rows as plain tuples: ~10x faster than ``sqlite3.Row`` for the tens of thousands of metric rows."""
        cur = self._conn().cursor()
        cur.row_factory = None
        return cur.execute(sql, args).fetchall()

    # -- paths -----------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        """The run's folder ``<root>/runs/<id>`` (the id is validated; the folder is not created)."""
        return _inside(self.runs_dir / check_run_id(run_id), self.runs_dir, "run folder")

    def artifact_path(self, run_id: str, name: str) -> Path:
        """Where artifact ``name`` of run ``run_id`` lives (``<run folder>/artifacts/<name>``)."""
        folder = self.run_dir(self._known(run_id)) / "artifacts"
        path = folder / check_artifact_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        return _inside(path, folder, "artifact")

    def artifacts(self, run_id: str) -> list[str]:
        """Names of the run's artifacts."""
        folder = self.run_dir(self._known(run_id)) / "artifacts"
        return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []

    # -- runs ------------------------------------------------------------------------------------
    def create_run(self, spec: ExperimentSpec | JobSpec | Mapping[str, Any] | str | os.PathLike[str],
                   name: str | None = None,
                   *, executor: str = "local", tags: Iterable[str] = (), options: Mapping[str, Any] | None = None,
                   status: str = "queued", run_id: str | None = None) -> str:
        """Record a new run of ``spec`` (any job kind's spec, validated) and create its folder; returns its id."""
        from kdlab.runs.spec import load_job

        spec = load_job(spec)
        if status not in STATUSES:
            raise ConfigError(f"status: {status!r} is not one of {list(STATUSES)}")
        run_id = check_run_id(run_id) if run_id is not None else new_run_id()
        name = str(name) if name else spec.name
        all_tags = list(dict.fromkeys([*spec.tags, *(str(t) for t in tags)]))
        folder = self.run_dir(run_id)
        try:
            folder.mkdir(parents=True, exist_ok=False)
        except FileExistsError as e:
            raise ConfigError(f"run id {run_id!r} already exists in {self.root}") from e
        except OSError as e:
            raise StoreError(f"cannot create run folder {folder}: {e}") from e
        try:
            with self._write() as c:
                c.execute("INSERT INTO runs (id, name, spec, status, executor, created, tags, options) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          (run_id, name, _json(spec.to_dict()), status, executor, time.time(),
                           _json(all_tags), _json(dict(options or {}))))
                self._event(c, run_id, "info", f"created ({status}, executor {executor})")
        except sqlite3.IntegrityError as e:
            shutil.rmtree(folder, ignore_errors=True)
            raise ConfigError(f"run id {run_id!r} already exists in {self.root}") from e
        return run_id

    def _known(self, run_id: str) -> str:
        check_run_id(run_id)
        if not self._read("SELECT 1 FROM runs WHERE id = ?", (run_id,)):
            ids = [r[0] for r in self._read("SELECT id FROM runs ORDER BY created DESC LIMIT 200")]
            raise unknown("run", run_id, ids, where=str(self.root))
        return run_id

    def resolve(self, text: str) -> str:
        """The run id that ``text`` names: an exact id, a unique id prefix, or a unique run name."""
        text = str(text)
        if RUN_ID_RE.fullmatch(text):
            if self._read("SELECT 1 FROM runs WHERE id = ?", (text,)):
                return text
            hits = [r[0] for r in self._read("SELECT id FROM runs WHERE substr(id, 1, ?) = ?", (len(text), text))]
        else:
            hits = []
        hits = hits or [r[0] for r in self._read("SELECT id FROM runs WHERE name = ?", (text,))]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise ConfigError(f"run {text!r} is ambiguous: it matches {', '.join(hits[:10])}")
        return self._known(text)

    def get_run(self, run_id: str) -> RunRecord:
        """The run's record (a pure read: see ``refresh`` for noticing dead workers and starting queued runs)."""
        self._known(run_id)
        row = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not row:
            raise unknown("run", run_id, [], where=str(self.root))
        return RunRecord.from_row(row[0], self.run_dir(run_id))

    def records(self, status: str | Sequence[str] | None = None, limit: int | None = None) -> list[RunRecord]:
        """Run records, newest first, optionally only those with ``status`` and the newest ``limit`` (no refresh)."""
        wanted: list[Any] = [status] if isinstance(status, str) else list(status or [])
        sql = "SELECT * FROM runs"
        if wanted:
            sql += f" WHERE status IN ({','.join('?' * len(wanted))})"
        sql += " ORDER BY created DESC, id DESC"
        if limit is not None:
            sql, wanted = sql + " LIMIT ?", [*wanted, int(limit)]
        rows = self._read(sql, wanted)
        return [RunRecord.from_row(r, self.runs_dir / r["id"]) for r in rows]

    def list_runs(self, status: str | Sequence[str] | None = None) -> pd.DataFrame:
        """One row per run (newest first): id, name, status, progress, times, host, device, tags, error (pure read)."""
        recs = self.records(status)
        done = {r["run_id"]: r["n"] for r in self._read(
            "SELECT run_id, MAX(epoch) AS n FROM metrics WHERE kind = 'epoch' GROUP BY run_id")}
        rows = []
        for r in recs:
            s = r.spec
            epochs = s.get("optim", {}).get("epochs") if kind_of(s) == "train" else None
            end = r.finished or (time.time() if r.status == "running" else None)
            rows.append({
                "id": r.id, "name": r.name, "kind": kind_of(s), "status": r.status,
                "epoch": int(done.get(r.id) or 0), "epochs": epochs,
                "method": s.get("method", {}).get("name"), "data": s.get("data", {}).get("name"),
                "teacher": (s.get("teacher") or {}).get("name"), "student": s.get("student", {}).get("name"),
                "test_acc": (r.summary or {}).get("test/acc"),
                "created": r.created, "started": r.started, "finished": r.finished,
                "duration_s": (end - r.started) if (end and r.started) else None,
                "executor": r.executor, "host": r.host, "device": r.device, "pid": r.pid,
                "tags": list(r.tags), "error": (r.error or "").splitlines()[0] if r.error else None,
            })
        cols = ["id", "name", "kind", "status", "epoch", "epochs", "method", "data", "teacher", "student", "test_acc",
                "created", "started", "finished", "duration_s", "executor", "host", "device", "pid", "tags",
                "error"]
        df = pd.DataFrame(rows, columns=cols)
        for c in ("created", "started", "finished"):
            df[c] = pd.to_datetime(df[c], unit="s", utc=True)
        return df

    def progress(self, run_id: str) -> Progress:
        """Where the run's job stands (its last ``progress`` rows and log line); empty before it reports."""
        rows = self._read_tuples("SELECT key, value FROM metrics WHERE run_id = ? AND kind = ? ORDER BY seq DESC "
                                 "LIMIT 2", (check_run_id(run_id), PROGRESS))
        values = {k: v for k, v in reversed(rows)}
        msg = self._read_tuples("SELECT message FROM events WHERE run_id = ? ORDER BY seq DESC LIMIT 1", (run_id,))
        return Progress(float(values.get("progress/done") or 0.0), float(values.get("progress/total") or 0.0),
                        msg[0][0] if msg else "")

    def jobs(self, kind: str | None = None, of: str | None = None,
             status: str | Sequence[str] | None = None) -> list[RunRecord]:
        """Runs of job kind ``kind`` (any: None) whose ``params.run`` is ``of`` (when given), newest first."""
        recs = self.records(status)
        return [r for r in recs if (kind is None or kind_of(r.spec) == kind)
                and (of is None or (r.spec.get("params") or {}).get("run") == of)]

    def rename_run(self, run_id: str, name: str) -> None:
        name = str(name).strip()
        if not name or len(name) > 200:
            raise ConfigError(f"name: expected 1-200 characters, got {name!r}")
        with self._write() as c:
            c.execute("UPDATE runs SET name = ? WHERE id = ?", (name, self._known(run_id)))

    def tag_run(self, run_id: str, *add: str, remove: Iterable[str] = ()) -> list[str]:
        """Add (and remove) tags; returns the run's tags."""
        self._known(run_id)
        with self._write() as c:
            tags = json.loads(c.execute("SELECT tags FROM runs WHERE id = ?", (run_id,)).fetchone()[0])
            drop = {str(t) for t in remove}
            tags = [t for t in dict.fromkeys([*tags, *(str(t) for t in add)]) if t not in drop]
            c.execute("UPDATE runs SET tags = ? WHERE id = ?", (_json(tags), run_id))
        return tags

    def delete_run(self, run_id: str) -> None:
        """Remove the run's rows and folder; a queued or running run must be cancelled first."""
        rec = self.get_run(run_id)
        if rec.status in ACTIVE:
            raise ConfigError(f"run {run_id} is {rec.status}; cancel it first (kdlab cancel {run_id})")
        folder = self.run_dir(run_id)
        with self._write() as c:
            for table in ("metrics", "events"):
                c.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            c.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)

    def set_status(self, run_id: str, status: str, *, error: str | None = None, traceback: str | None = None,
                   expect: Sequence[str] | None = None, message: str | None = None,
                   summary: Mapping[str, Any] | None = None, attempt: int | None = None) -> bool:
        """Set the run's status (and error/traceback); with ``expect`` only when the current status is one of
        those (and with ``attempt`` only when the run is still on that attempt). Entering ``running`` stamps
        ``started``, a final status stamps ``finished``. Returns whether the row changed."""
        if status not in STATUSES:
            raise ConfigError(f"status: {status!r} is not one of {list(STATUSES)}")
        self._known(run_id)
        now = time.time()
        sets = ["status = ?"]
        args: list[Any] = [status]
        if status == "running":
            sets.append("started = COALESCE(started, ?)")
            args.append(now)
        if status in TERMINAL:
            sets += ["finished = ?", "error = ?", "traceback = ?"]
            args += [now, error, traceback]
        if status == "queued":
            sets += ["finished = NULL", "error = NULL", "traceback = NULL"]
        if summary is not None:
            sets.append("summary = ?")
            args.append(_json(dict(summary)))
        sql = f"UPDATE runs SET {', '.join(sets)} WHERE id = ?"
        args.append(run_id)
        if expect is not None:
            sql += f" AND status IN ({','.join('?' * len(expect))})"
            args += list(expect)
        if attempt is not None:
            sql += " AND attempt = ?"
            args.append(int(attempt))
        with self._write() as c:
            changed = c.execute(sql, args).rowcount > 0
            if changed:
                text = message or (f"{status}: {error}" if error else status)
                self._event(c, run_id, "error" if status in ("failed", "interrupted") else "info", text)
        return changed

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set raw columns (host, device, pid, pid_start, heartbeat, options, resume, cancel_requested, ...)."""
        allowed = {"host", "device", "pid", "pid_start", "heartbeat", "options", "resume", "cancel_requested",
                   "attempt", "summary", "executor", "started"}
        bad = set(fields) - allowed
        if bad:
            raise ConfigError(f"update_run: unknown or protected fields {sorted(bad)}; valid: {sorted(allowed)}")
        if not fields:
            return
        vals = [_json(v) if k in ("options", "summary") else (int(v) if isinstance(v, bool) else v)
                for k, v in fields.items()]
        with self._write() as c:
            c.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?",
                      [*vals, self._known(run_id)])

    def claim_next(self, executor: str, limit: int | None, slotless: Sequence[str] = CONTROLLER_KINDS
                   ) -> RunRecord | None:
        """Atomically move the oldest queued run of ``executor`` to ``running`` when fewer than ``limit`` of
        its runs are running (None: no limit; runs of the ``slotless`` job kinds are not counted); returns it,
        or None when nothing was claimed."""
        with self._write() as c:
            if limit is not None:
                marks = ",".join("?" * len(slotless))
                n = c.execute("SELECT COUNT(*) FROM runs WHERE status = 'running' AND executor = ? AND "
                              f"COALESCE(json_extract(spec, '$.kind'), 'train') NOT IN ({marks})",
                              (executor, *slotless)).fetchone()[0]
                if n >= limit:
                    return None
            row = c.execute("SELECT id FROM runs WHERE status = 'queued' AND executor = ? "
                            "ORDER BY created, id LIMIT 1", (executor,)).fetchone()
            if row is None:
                return None
            c.execute("UPDATE runs SET status = 'running', started = ?, heartbeat = NULL, pid = NULL, "
                      "pid_start = NULL, host = NULL, finished = NULL, error = NULL, traceback = NULL, "
                      "attempt = attempt + 1 WHERE id = ?", (time.time(), row[0]))
            self._event(c, row[0], "info", "starting (a slot is free)")
        return self.get_run(row[0])

    def heartbeat(self, run_id: str) -> bool:
        """Stamp the run's heartbeat; returns whether a cancel was requested."""
        with self._write() as c:
            c.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time(), run_id))
            row = c.execute("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    # -- queue settings --------------------------------------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        row = self._read("SELECT value FROM settings WHERE key = ?", (key,))
        return json.loads(row[0][0]) if row else default

    def set_setting(self, key: str, value: Any) -> None:
        with self._write() as c:
            c.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                      "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, _json(value)))

    @property
    def max_concurrent(self) -> int:
        """How many local runs may run at once: ``KDLAB_MAX_CONCURRENT``, else the store setting, else 2."""
        env = os.environ.get("KDLAB_MAX_CONCURRENT")
        if env:
            try:
                n = int(env)
            except ValueError:
                raise ConfigError(f"KDLAB_MAX_CONCURRENT: expected a whole number >= 0, got {env!r}") from None
        else:
            n = int(self.get_setting("max_concurrent", DEFAULT_MAX_CONCURRENT))
        if n < 0:
            raise ConfigError(f"max_concurrent: expected a whole number >= 0 (0 pauses the queue), got {n}")
        return n

    @max_concurrent.setter
    def max_concurrent(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"max_concurrent: expected a whole number >= 0 (0 pauses the queue), got {n!r}")
        self.set_setting("max_concurrent", n)  # queued runs start at the next refresh (kdlab.runs.scheduler)

    # -- metrics ---------------------------------------------------------------------------------
    def add_metrics(self, run_id: str, rows: Iterable[Mapping[str, Any] | Sequence[Any]],
                    events: Iterable[tuple[str, str]] = ()) -> int:
        """Append metric rows in one transaction; each row is a dict with ``step``, ``key``, ``value`` and
        optional ``epoch``, ``kind`` (``"step"``/``"epoch"``), ``time``, or a tuple in that column order
        ``(step, epoch, kind, key, value, time)``. ``events`` are ``(level, message)`` written alongside."""
        check_run_id(run_id)
        now = time.time()
        out = []
        for r in rows:
            if isinstance(r, Mapping):
                out.append((run_id, int(r["step"]), _finite_or_none(r.get("epoch")), str(r.get("kind", "step")),
                            str(r["key"]), _finite_or_none(r["value"]), float(r.get("time") or now)))
            else:
                step, epoch, kind, key, value, t = r
                out.append((run_id, int(step), _finite_or_none(epoch), str(kind), str(key),
                            _finite_or_none(value), float(t or now)))
        events = list(events)
        if not out and not events:
            return 0
        with self._write() as c:
            c.executemany("INSERT INTO metrics (run_id, step, epoch, kind, key, value, time) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)", out)
            for level, message in events:
                self._event(c, run_id, level, message)
        return len(out)

    def log_metrics(self, run_id: str, step: int, values: Mapping[str, float], epoch: float | None = None,
                    kind: str = "step") -> int:
        """Append ``values`` (key -> number) at ``step`` in one transaction."""
        now = time.time()
        return self.add_metrics(run_id, [(step, epoch, kind, k, v, now) for k, v in values.items()])

    def metrics(self, run_id: str, since_step: int | None = None, since_seq: int | None = None,
                kind: str | None = None, keys: Sequence[str] | None = None) -> pd.DataFrame:
        """Tidy metric rows ``seq, step, epoch, kind, key, value, time`` in commit order.

        Poll incrementally with ``since_step`` = the largest ``step`` seen (rows with a larger step) or
        ``since_seq`` = the largest ``seq`` seen. ``time`` is unix seconds.
        """
        check_run_id(run_id)
        sql, args = "SELECT seq, step, epoch, kind, key, value, time FROM metrics WHERE run_id = ?", [run_id]
        if since_step is not None:
            sql += " AND step > ?"
            args.append(int(since_step))
        if since_seq is not None:
            sql += " AND seq > ?"
            args.append(int(since_seq))
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        if keys:
            sql += f" AND key IN ({','.join('?' * len(keys))})"
            args += list(keys)
        rows = self._read_tuples(sql + " ORDER BY seq", args)
        df = pd.DataFrame.from_records(rows, columns=["seq", "step", "epoch", "kind", "key", "value", "time"])
        return df.astype({"seq": "int64", "step": "int64", "epoch": "float64", "value": "float64",
                          "time": "float64"})

    def has_metrics(self, run_id: str, kind: str | None = None) -> bool:
        """Whether the run has any metric row (of ``kind``): one indexed look-up, no rows read."""
        sql, args = "SELECT 1 FROM metrics WHERE run_id = ?", [check_run_id(run_id)]
        if kind is not None:
            sql, args = sql + " AND kind = ?", [*args, kind]
        return bool(self._read_tuples(sql + " LIMIT 1", args))

    def history(self, run_id: str) -> pd.DataFrame:
        """Epoch metrics as a wide table, one row per finished epoch (index ``epoch``)."""
        df = self.metrics(run_id, kind="epoch")
        if df.empty:
            return pd.DataFrame(index=pd.Index([], name="epoch", dtype="int64"))
        wide = df.pivot_table(index="epoch", columns="key", values="value", aggfunc="last")
        wide.index = wide.index.astype("int64")
        wide.columns.name = None
        return wide

    def truncate_metrics(self, run_id: str, after_step: int) -> int:
        """Delete the run's metric rows with ``step > after_step`` (rows written after a checkpoint)."""
        with self._write() as c:
            return c.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?",
                             (check_run_id(run_id), int(after_step))).rowcount

    # -- events ----------------------------------------------------------------------------------
    @staticmethod
    def _event(c: sqlite3.Connection, run_id: str, level: str, message: str) -> None:
        c.execute("INSERT INTO events (run_id, time, level, message) VALUES (?, ?, ?, ?)",
                  (run_id, time.time(), level, str(message)))

    def log(self, run_id: str, message: str, level: str = "info") -> None:
        """Append a log line to the run's events."""
        if level not in LEVELS:
            raise ConfigError(f"level: {level!r} is not one of {list(LEVELS)}")
        with self._write() as c:
            self._event(c, self._known(run_id), level, message)

    def logs(self, run_id: str, since_seq: int | None = None) -> pd.DataFrame:
        """The run's log lines ``seq, time, level, message`` (time as UTC datetimes)."""
        self._known(run_id)
        rows = self._read("SELECT seq, time, level, message FROM events WHERE run_id = ? AND seq > ? ORDER BY seq",
                          (run_id, int(since_seq or 0)))
        df = pd.DataFrame([tuple(r) for r in rows], columns=["seq", "time", "level", "message"])
        df["time"] = pd.to_datetime(df["time"].astype("float64"), unit="s", utc=True)
        return df


def open_store(path: str | os.PathLike[str] | None = None) -> Store:
    """The run store at ``path`` (a folder), by default ``KDLAB_HOME``; created on first use.

    A folder that cannot be created or written raises ``StoreError`` saying which and why.
    """
    if path is None:
        from kdlab.paths import home

        try:
            path = home()
        except OSError as e:
            env = os.environ.get("KDLAB_HOME")
            raise StoreError(f"run store folder {env or '(default)'} cannot be created ({e.strerror or e}); "
                             "set KDLAB_HOME to a folder you can write") from e
    return Store(path)


# ------------------------------------------------------------------------------------------ callback

class StoreCallback(Callback):
    """Writes the trainer's step and epoch metrics into the store, a few transactions per epoch.

    Step rows are buffered and committed with the epoch's rows at the end of each epoch (and, for long
    epochs, every ``flush_every_s`` seconds; a flush never includes the newest step row, which keeps
    commits in step order for ``metrics(since_step=...)`` polling).
    """

    def __init__(self, store: Store, run_id: str, flush_every_s: float = 2.0):
        self.store, self.run_id, self.flush_every_s = store, check_run_id(run_id), flush_every_s
        self._rows: list[tuple[Any, ...]] = []
        self._events: list[tuple[str, str]] = []
        self._last_flush = time.monotonic()
        self.epochs = 0

    def flush(self) -> None:
        if self._rows or self._events:
            self.store.add_metrics(self.run_id, self._rows, self._events)
        self._rows, self._events = [], []  # cleared only after the commit: an interrupted flush is retried
        self._last_flush = time.monotonic()

    def on_fit_start(self, trainer: Trainer) -> None:
        self.epochs = trainer.config.epochs
        where = f"from epoch {trainer.epoch + 1}" if trainer.epoch else "from scratch"
        self._events.append(("info", f"training {where}: {self.epochs} epochs on {trainer.device}"))
        self.flush()

    def on_step_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if self._rows and time.monotonic() - self._last_flush > self.flush_every_s:
            self.flush()
        now, step, epoch = time.time(), int(metrics.get("step", trainer.global_step)), metrics.get("epoch")
        self._rows += [(step, epoch, "step", k, v, now) for k, v in metrics.items() if k not in ("step", "epoch")]

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        now, step, epoch = time.time(), trainer.global_step, metrics.get("epoch", trainer.epoch)
        self._rows += [(step, epoch, "epoch", k, v, now) for k, v in metrics.items()
                       if k != "epoch" and isinstance(v, (int, float))]
        shown = ", ".join(f"{k}={metrics[k]:.4g}" for k in ("train/loss", "val/acc", "val/loss")
                          if isinstance(metrics.get(k), (int, float)))
        self._events.append(("info", f"epoch {int(epoch)}/{self.epochs}: {shown}"))
        self.flush()

    def on_fit_end(self, trainer: Trainer, result: TrainResult) -> None:
        self.flush()


def hostname() -> str:
    return socket.gethostname()
