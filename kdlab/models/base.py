"""The model registry: ``create(name, num_classes, in_shape, **params)`` and ``@register_model``."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
from torch import nn

from kdlab.errors import ConfigError, unknown
from kdlab.models.external import BUILDERS, create_external, table_rows
from kdlab.registry import Param, Registry

MODELS = Registry("model")


def register_model(name: str, params: Mapping[str, Param] | None = None, family: str = "",
                   **tags: Any) -> Callable:
    """Register a builder ``fn(num_classes, in_shape, **params) -> nn.Module`` under ``name``."""
    return MODELS.register(name, params=params or {}, family=family, **tags)


def create(name: str, num_classes: int, in_shape: tuple[int, ...] | list[int], **params: Any) -> nn.Module:
    """Build model ``name`` for ``num_classes`` outputs on inputs of shape ``in_shape`` (C, H, W).

    ``"timm:<name>"`` and ``"torchvision:<name>"`` build that package's model (see ``kdlab.models.external``).
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ConfigError(f"num_classes: expected a positive integer, got {num_classes!r}")
    in_shape = tuple(in_shape)
    if len(in_shape) != 3 or any((not isinstance(d, int)) or d < 1 for d in in_shape):
        raise ConfigError(f"in_shape: expected (channels, height, width) positive integers, got {in_shape!r}")
    if isinstance(name, str) and ":" in name:  # "timm:<name>", "torchvision:<name>" passthrough
        if name.partition(":")[0] not in BUILDERS:
            raise unknown("model", name, [*MODELS.names(), *(f"{p}:<name>" for p in BUILDERS)], where="model")
        model = create_external(name, num_classes, in_shape, params)
    else:
        entry = MODELS.entry(name, "model")
        values = MODELS.validate(name, params, where=f"model {name!r} params")
        model = entry.obj(num_classes=num_classes, in_shape=in_shape, **values)
    model.kdlab_name = name
    return model


def list_models() -> pd.DataFrame:
    """Registered models: name, family, summary and parameters (plus the timm:/torchvision: passthroughs)."""
    return pd.DataFrame(MODELS.table() + table_rows())
