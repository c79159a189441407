"""Where runs are mirrored to: MLflow tracking URIs and TensorBoard folders, checked before any run is recorded.

Pure string checks (``check_mlflow_uri``) run when a spec is loaded; ``tracking_issues`` also checks this machine
(the package is installed, the folder can be written) and is called by ``kdlab.runs.preflight`` and the export.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from kdlab.errors import ConfigError, Issue

#: the MLflow URI schemes kdlab mirrors to (a plain folder path is a ``file:`` store)
MLFLOW_SCHEMES = ("file", "sqlite", "http", "https")
#: what to install when a tracking package is missing
INSTALL_HINT = "pip install 'kdlab[tracking]'"
#: the export targets (``kdlab export --to``)
TARGETS = ("mlflow", "tensorboard")


def check_mlflow_uri(uri: str) -> str:
    """``uri`` as an MLflow tracking URI: a folder path becomes a ``file:`` URI; other schemes than
    ``MLFLOW_SCHEMES`` are a ConfigError listing them."""
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("", "file"):  # a folder
        path = Path(unquote(urlparse(uri).path) if scheme == "file" else uri).expanduser().absolute()
        return path.as_uri()
    if scheme not in MLFLOW_SCHEMES:
        raise ConfigError(f"{uri!r}: scheme {scheme + ':'!r} is not supported; valid: a folder, file:///FOLDER, "
                          "sqlite:///FILE.db, http://HOST:PORT, https://HOST")
    if scheme == "sqlite" and not uri.lower().startswith("sqlite:///"):
        raise ConfigError(f"{uri!r}: an SQLite URI names a file as sqlite:///relative.db or sqlite:////abs/path.db")
    if scheme.startswith("http") and not urlparse(uri).netloc:
        raise ConfigError(f"{uri!r}: an HTTP URI names a server, e.g. http://localhost:5000")
    return uri


def is_file_store(uri: str) -> bool:
    """Whether the (checked) MLflow URI is a plain folder store (``file:``)."""
    return urlparse(uri).scheme.lower() == "file"


def local_path(uri: str) -> Path | None:
    """The local folder (``file:``) or database file (``sqlite:///``) an MLflow URI names; None for a server."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "sqlite":
        return Path(unquote(uri[len("sqlite:///"):])).expanduser().absolute()
    return None


def _writable(path: Path, folder: bool) -> str | None:
    """Why ``path`` (a folder, or a file when ``folder`` is False) cannot be created or written; None when it can."""
    if path.exists():
        if folder and not path.is_dir():
            return f"{path} exists and is not a folder"
        target = path if folder else path.parent
    else:
        target = next((p for p in path.parents if p.exists()), Path("/"))
        if not target.is_dir():
            return f"{path} cannot be created: {target} is not a folder"
    if not os.access(target, os.W_OK | os.X_OK):
        return f"{target} is not writable"
    return None


def _missing(package: str, module: str) -> str | None:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"needs {package}, which is not installed: {INSTALL_HINT}"


def mlflow_issues(uri: str, where: tuple[str, ...]) -> list[Issue]:
    """What stops mirroring to MLflow at ``uri`` from this machine (bad URI, no package, unwritable folder)."""
    try:
        uri = check_mlflow_uri(uri)
    except ConfigError as e:
        return [Issue(where, str(e), MLFLOW_SCHEMES)]
    problem = _missing("MLflow", "mlflow")
    path = local_path(uri)
    if problem is None and path is not None:
        problem = _writable(path, folder=is_file_store(uri))
    return [Issue(where, problem)] if problem else []


def tensorboard_issues(folder: str, where: tuple[str, ...]) -> list[Issue]:
    """What stops writing TensorBoard event files into ``folder`` from this machine."""
    problem = _missing("TensorBoard", "tensorboard") or _writable(Path(folder).expanduser().absolute(), folder=True)
    return [Issue(where, problem)] if problem else []


def tracking_issues(spec: Any) -> list[Issue]:
    """The issues of ``spec.tracking`` (a ``TrackingSpec``) on this machine; none when the spec has none."""
    tracking, prefix = getattr(spec, "tracking", None), ("tracking",)
    if tracking is None:
        return []
    issues = []
    if tracking.mlflow is not None:
        issues += mlflow_issues(tracking.mlflow, (*prefix, "mlflow"))
    if tracking.tensorboard is not None:
        issues += tensorboard_issues(tracking.tensorboard, (*prefix, "tensorboard"))
    return issues
