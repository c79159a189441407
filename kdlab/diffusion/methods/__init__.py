"""Diffusion distillation methods, one file each, registered in ``DIFFUSION_METHODS`` (importing registers).

- ``progressive``: Salimans & Ho 2022, two teacher DDIM steps in one, halving rounds.
- ``consistency``: Song et al. 2023, consistency distillation with an EMA target.
- ``dmd2``: Yin et al. 2024, distribution matching with a fake-score network (two time scales, optional GAN).
- ``sid``: Zhou et al. 2024, score identity distillation of a one-step generator.
- ``guidance``: classifier-free guidance distilled into an adapter (one pass instead of two).
- ``boot``: Gu et al. 2023, data-free bootstrapping of the teacher's ODE.
- ``multi_student``: Song et al. 2024, students specialised on class subsets.
"""
from __future__ import annotations

from kdlab.diffusion.methods import (  # noqa: F401  (importing a module registers its method)
    boot,
    consistency,
    dmd2,
    guidance,
    multi_student,
    progressive,
    sid,
)
from kdlab.diffusion.methods.base import DIFFUSION_METHODS, DiffusionMethod, create_diffusion_method

__all__ = ["DIFFUSION_METHODS", "DiffusionMethod", "create_diffusion_method"]
