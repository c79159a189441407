"""Trained language models kept once per configuration (teachers, and no-KD students used as baselines and as the
OMP donor), like image teachers: a folder per key under ``kdlab.paths.cache_dir("lm_models")``, safetensors."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from kdlab.errors import CheckpointError
from kdlab.paths import cache_dir, file_lock
from kdlab.text.models import load_lm, save_lm


def model_key(config: Mapping[str, Any]) -> str:
    """A stable key of a model's training configuration (JSON, sorted keys)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cache_folder(key: str) -> Path:
    """Where the model cached under ``key`` (``model_key`` of its configuration) lives."""
    return cache_dir("lm_models") / str(key)


def cached_lm(config: Mapping[str, Any], train: Callable[[], tuple[nn.Module, dict[str, Any]]]
              ) -> tuple[nn.Module, dict[str, Any]]:
    """The model trained for ``config``: loaded from the cache, or ``train()``-ed once (under a lock, so two
    runs needing it train it once) and stored. Returns the model and its meta (``source``: cache | trained)."""
    key = model_key(config)
    folder = cache_folder(key)
    root = folder.parent
    with file_lock(root / f"{key}.lock"):
        if (folder / "kdlab_meta.json").is_file():
            try:
                meta = json.loads((folder / "kdlab_meta.json").read_text())
                return load_lm(folder), {**meta, "source": "cache"}
            except (CheckpointError, ValueError, OSError):
                shutil.rmtree(folder, ignore_errors=True)  # a damaged entry is rebuilt
        model, meta = train()
        tmp = root / f"{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_lm(model, tmp)
        (tmp / "kdlab_meta.json").write_text(json.dumps({**meta, "config": dict(config)}, default=str))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    return model, {**meta, "source": "trained"}
