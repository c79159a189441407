"""Where kdlab keeps runs and caches: ``KDLAB_HOME`` / ``KDLAB_CACHE`` or the user's folders."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any


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


def digest_tensor(h: Any, t: Any) -> None:
    """Feed a tensor's dtype, shape and bytes to hash ``h`` (content keys of caches: same data, same key)."""
    import torch  # lazy: this module stays importable without torch's start-up cost

    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def config_key(config: Mapping[str, Any]) -> str:
    """A stable key of a training configuration (JSON, sorted keys)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cached_model(root: Path, config: Mapping[str, Any], train: Callable[[], tuple[Any, dict[str, Any]]],
                 save: Callable[[Any, Path], Any], load: Callable[[Path], Any],
                 damaged: tuple[type[BaseException], ...] = (ValueError, OSError)) -> tuple[Any, dict[str, Any]]:
    """The model trained for ``config``, kept in ``root/<config_key>``: loaded, or ``train()``-ed once (under a
    lock, so two runs needing it train it once) and saved there atomically. A damaged entry (``load`` raising one
    of ``damaged``) is rebuilt. Returns the model and its meta (``source``: cache | trained)."""
    key = config_key(config)
    folder = root / key
    with file_lock(root / f"{key}.lock"):
        if (folder / "kdlab_meta.json").is_file():
            try:
                meta = json.loads((folder / "kdlab_meta.json").read_text())
                return load(folder), {**meta, "source": "cache"}
            except damaged:
                shutil.rmtree(folder, ignore_errors=True)
        model, meta = train()
        tmp = root / f"{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save(model, tmp)
        (tmp / "kdlab_meta.json").write_text(json.dumps({**meta, "config": dict(config)}, default=str))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    return model, {**meta, "source": "trained"}
