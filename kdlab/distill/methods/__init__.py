"""One file per distillation method; importing this package registers them all."""
from __future__ import annotations

from kdlab.distill.methods import kd, vanilla  # noqa: F401
