"""Where kdlab keeps runs and caches: ``KDLAB_HOME`` / ``KDLAB_CACHE`` or the user's folders."""
from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def home() -> Path:
    """Root of the run store (``KDLAB_HOME``, else ``$XDG_DATA_HOME/kdlab`` or ~/.local/share/kdlab)."""
    env = os.environ.get("KDLAB_HOME")
    base = Path(env) if env else Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "kdlab"
    base.mkdir(parents=True, exist_ok=True)
    return base


def cache_dir(*parts: str) -> Path:
    """A cache folder (``KDLAB_CACHE``, else ``$XDG_CACHE_HOME/kdlab``), created on demand."""
    env = os.environ.get("KDLAB_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kdlab"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created when missing) for the ``with`` block: one process at a time
    builds a cache entry that several runs need."""
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
