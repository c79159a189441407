"""Trained language models kept once per configuration (teachers, and no-KD students used as baselines and as the
OMP donor), like image teachers: a folder per key under ``kdlab.paths.cache_dir("lm_models")``, safetensors."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from kdlab.errors import CheckpointError
from kdlab.paths import cache_dir, cached_model, config_key
from kdlab.text.models import load_lm, save_lm


def model_key(config: Mapping[str, Any]) -> str:
    """A stable key of a model's training configuration."""
    return config_key(config)


def cache_folder(key: str) -> Path:
    """Where the model cached under ``key`` (``model_key`` of its configuration) lives."""
    return cache_dir("lm_models") / str(key)


def cached_lm(config: Mapping[str, Any], train: Callable[[], tuple[nn.Module, dict[str, Any]]]
              ) -> tuple[nn.Module, dict[str, Any]]:
    """The model trained for ``config``: loaded from the cache, or ``train()``-ed once and stored
    (``kdlab.paths.cached_model``). Returns the model and its meta (``source``: cache | trained)."""
    return cached_model(cache_dir("lm_models"), config, train, save_lm, load_lm,
                        damaged=(CheckpointError, ValueError, OSError))
