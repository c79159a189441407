"""Where kdlab keeps runs and caches: ``KDLAB_HOME`` / ``KDLAB_CACHE`` or the user's folders."""
from __future__ import annotations

import os
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
