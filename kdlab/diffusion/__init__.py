"""Diffusion distillation (science only: torch, numpy and ``diffusers``): data, denoisers and their teachers,
the shared noise schedule and samplers, few-step distillation methods and sample-quality metrics.

Needs the ``diffusion`` extra (``pip install 'kdlab[diffusion]'``: Hugging Face ``diffusers``).
"""
from __future__ import annotations

from kdlab.diffusion.data import DIFFUSION_DATA, DiffusionData, load_diffusion_data
from kdlab.diffusion.methods import DIFFUSION_METHODS, DiffusionMethod, create_diffusion_method
from kdlab.diffusion.models import (
    MLPDenoiser,
    UNetDenoiser,
    check_same_output,
    create_denoiser,
    load_denoiser,
    save_denoiser,
)
from kdlab.diffusion.schedule import SAMPLERS, NoiseSchedule, Samples, sample_student, sample_teacher
from kdlab.diffusion.teacher import cached_teacher, teacher_config, train_denoiser

__all__ = ["DIFFUSION_DATA", "DIFFUSION_METHODS", "SAMPLERS", "DiffusionData", "DiffusionMethod", "MLPDenoiser",
           "NoiseSchedule", "Samples", "UNetDenoiser", "cached_teacher", "check_same_output", "create_denoiser",
           "create_diffusion_method", "load_denoiser", "load_diffusion_data", "sample_student", "sample_teacher",
           "save_denoiser", "teacher_config", "train_denoiser"]
