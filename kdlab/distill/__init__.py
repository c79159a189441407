"""Teacher-student distillation: feature taps, the distiller contract, the method registry, the trainer."""
from __future__ import annotations

from kdlab.distill import methods  # noqa: F401  (registers the built-in methods)
from kdlab.distill.base import (
                                METHODS,
                                Distiller,
                                TeacherOutput,
                                create_distiller,
                                list_methods,
                                register_method,
)
from kdlab.models.taps import FeatureTaps, feature_shapes

__all__ = ["METHODS", "Distiller", "FeatureTaps", "TeacherOutput", "create_distiller", "feature_shapes",
           "list_methods", "register_method"]
