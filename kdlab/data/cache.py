"""Decoded arrays cached as .npz under ``cache_dir("data")``: written atomically, rebuilt when corrupt."""
from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from kdlab.paths import cache_dir

FORMAT = 1  # bump when what the builders store changes; old files are then simply not read


def cache_path(key: str) -> Path:
    """Where the arrays cached under ``key`` live."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
    return cache_dir("data") / f"{safe}.v{FORMAT}.npz"


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically (temporary file in the same folder, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_npz(path: Path, keys: Iterable[str] = ()) -> dict[str, np.ndarray] | None:
    """The arrays in ``path``, or None when it is missing, truncated, corrupt or lacks one of ``keys``."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
    if any(k not in arrays for k in keys):
        return None
    return arrays


def cached(key: str, build: Callable[[], dict[str, np.ndarray]],
           keys: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """The arrays cached under ``key``; built (and saved) on first use or when the file is unreadable."""
    path = cache_path(key)
    keys = tuple(keys)
    arrays = load_npz(path, keys)
    if arrays is None:
        arrays = build()
        save_npz(path, arrays)
    return arrays
