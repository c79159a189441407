"""The folder of a foreground run (``kdlab train``): a new one, or one the user names, which is never a folder
that already holds a run unless the user resumes it or asks to replace it (and never a run store's run)."""
from __future__ import annotations

import contextlib
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from kdlab.errors import ConfigError
from kdlab.runs.artifacts import PREDICTIONS_FILE, RESULTS_FILE

#: what a training run writes into its folder (all that ``replace`` removes)
RUN_FILES = ("checkpoints", RESULTS_FILE, PREDICTIONS_FILE)


def new_run_dir(name: str, parent: Path | None = None) -> Path:
    """A fresh folder ``<parent>/<timestamp>-<name>-<hex>`` (default parent: ``<KDLAB_HOME>/runs``)."""
    from kdlab.paths import home

    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:40] or "run"
    parent = parent if parent is not None else home() / "runs"
    path = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{secrets.token_hex(2)}"
    _make(path, exist_ok=False)
    return path


def _make(folder: Path, exist_ok: bool = True) -> None:
    """Create ``folder``; a folder that cannot be created is a ConfigError naming it, not a traceback."""
    try:
        folder.mkdir(parents=True, exist_ok=exist_ok)
    except OSError as e:
        raise ConfigError.at("run_dir", f"cannot create the run folder {folder}: {e.strerror or e}") from None


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a training run's results or checkpoints."""
    ckpts = folder / "checkpoints"
    return (folder / RESULTS_FILE).exists() or (ckpts.is_dir() and any(ckpts.iterdir()))


def store_run_of(folder: Path) -> str | None:
    """The run id when ``folder`` is the folder of a run in a run store (``<store>/runs/<id>``), else None."""
    from kdlab.runs.store import DB_NAME, open_store

    folder = folder.absolute()
    if folder.parent.name != "runs" or not (folder.parent.parent / DB_NAME).is_file():
        return None
    store = open_store(folder.parent.parent)
    try:
        return folder.name if store.get_run(folder.name) else None
    except (ConfigError, KeyError):
        return None


def check_run_dir(folder: Path, *, resume: bool = False, replace: bool = False) -> None:
    """ConfigError unless a foreground run may write into ``folder``: it is new, empty of runs, resumed
    (``resume``) or to be replaced (``replace``); a run store's run folder is never taken."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError.at("run_dir", f"{folder} is a file, not a folder")
    run_id = store_run_of(folder) if folder.exists() else None
    if run_id is not None:
        raise ConfigError.at("run_dir", f"{folder} is the folder of run {run_id} of the run store "
                             f"{folder.parent.parent}; a foreground run never writes there. `kdlab resume {run_id}` "
                             "continues that run; give a new --run-dir (or none) for a new one")
    if resume:
        if not (folder / "checkpoints" / "last.pt").is_file():
            raise ConfigError.at("run_dir", f"cannot resume: {folder / 'checkpoints' / 'last.pt'} does not exist")
    elif folder.exists() and holds_run(folder) and not replace:
        raise ConfigError.at("run_dir", f"{folder} already holds a run (its results or checkpoints); --resume "
                             "continues it, a new --run-dir (or none) starts another, --replace overwrites it")


@contextlib.contextmanager
def claimed_run_dir(folder: Path | None, name: str, *, resume: bool = False, replace: bool = False) -> Iterator[Path]:
    """The folder a foreground run writes to (``folder`` after ``check_run_dir``, else a new one). With
    ``replace`` the old run's files go first. A folder this created is removed again when the run fails
    before writing anything in it."""
    if folder is None:
        folder, created = new_run_dir(name), True
    else:
        check_run_dir(folder, resume=resume, replace=replace)
        created = not folder.exists()
        if replace and not resume:
            for entry in RUN_FILES:
                path = folder / entry
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        _make(folder)
    try:
        yield folder
    except BaseException:
        if created and folder.is_dir() and not any(p.is_file() for p in folder.rglob("*")):
            shutil.rmtree(folder, ignore_errors=True)
        raise
