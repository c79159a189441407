"""Model zoo: ``create(name, num_classes, in_shape)``, ``list_models()``, ``@register_model``."""
from __future__ import annotations

from kdlab.models import convnet, external, mixer, mlp, resnet, vit, wrn  # noqa: F401  (registers the built-in models)
from kdlab.models.base import MODELS, create, list_models, register_model

__all__ = ["MODELS", "create", "list_models", "register_model"]
