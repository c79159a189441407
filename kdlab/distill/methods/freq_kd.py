"""Frequency-band distillation: the teacher's knowledge matched separately on low and high spatial frequencies,
so a study can weight what the student takes from each band (the question of Yin et al., "A Fourier
Perspective on Model Robustness in Computer Vision", NeurIPS 2019, turned into a loss; frequency-aware KD in
the spirit of Zhang et al., "FreeKD: Knowledge Distillation via Semantic Frequency Prompt", CVPR 2024,
which also distils frequency bands of features separately).

``target="logits"`` (default, any student): the images are split by a radial FFT mask at ``cutoff`` (fraction
of Nyquist, ``kdlab.fourier``) into x_low + x_high = x, and

    L = ce_weight * CE(s(x), y) + kd_weight * KD(s(x), t(x)) + low_weight * KD(s(x_low), t(x_low))
        + high_weight * KD(s(x_high), t(x_high)),   KD = T^2 KL(p_t^T || p_s^T).

With low_weight = high_weight = 0 this is Hinton KD. The teacher's band logits depend on the sample alone,
so they are cached like plain logits.

``target="features"`` (conv students): FitNets-style hints on the aligned stages, with the squared error of the
adapted student map and the teacher map split into low- and high-frequency parts (Parseval: the two parts
sum to the plain MSE), ``L = ce + low_weight * MSE_low + high_weight * MSE_high``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from kdlab.distill.base import CE_WEIGHT, LAYERS, Distiller, TeacherOutput, register_method
from kdlab.distill.functional import kl_div
from kdlab.distill.methods.spatial import require_spatial
from kdlab.fourier import low_pass, low_pass_mask
from kdlab.registry import Param

TARGETS = ("logits", "features")
BANDS = ("band:low", "band:high")


def split_bands(x: torch.Tensor, cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_low, x_high) in ``x``'s dtype with x_low + x_high = x: the low-pass part, and the rest."""
    low = low_pass(x, cutoff).to(x.dtype)
    return low, x - low


def band_mse(student: torch.Tensor, teacher: torch.Tensor, cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared error of two (N, C, H, W) maps split into its low- and high-frequency parts.

    By Parseval, ``sum |FFT(d)|^2 / (H W) = sum d^2``, so low + high equals ``mean((student - teacher)^2)``.
    """
    d = student - teacher
    h, w = d.shape[-2:]
    power = torch.view_as_real(torch.fft.fft2(d)).pow(2).sum(-1) / (h * w)  # |F|^2, smooth at 0
    mask = low_pass_mask(h, w, cutoff, d.device)
    n = d.numel()
    return (power * mask).sum() / n, (power * ~mask).sum() / n


@register_method("freq_kd")
class FreqKD(Distiller):
    """Frequency-band KD: logits (or stage features) matched separately on low- and high-pass filtered parts."""

    params = {
        "ce_weight": CE_WEIGHT,
        "kd_weight": Param(1.0, "weight of plain KD on the unfiltered images (logits target)", float, 0.0, 100.0),
        "low_weight": Param(1.0, "weight of the low-frequency band term", float, 0.0, 1e4),
        "high_weight": Param(1.0, "weight of the high-frequency band term", float, 0.0, 1e4),
        "cutoff": Param(0.5, "band boundary: radius as a fraction of Nyquist", float, 0.01, 1.4),
        "temperature": Param(4.0, "softmax temperature of the KD terms", float, 0.05, 100.0),
        "target": Param("logits", "what is matched per band: the logits or the stage feature maps", str,
                        choices=TARGETS),
        "teacher_layers": LAYERS,
        "student_layers": LAYERS,
    }

    def __init__(self, teacher: torch.nn.Module | None, student: torch.nn.Module, in_shape: Sequence[int],
                 **params: Any):
        features = params.get("target") == "features"
        self.feature_kind = "stages" if features else None  # instance flags, read by Distiller.__init__
        self.needs_adapters = features
        super().__init__(teacher, student, in_shape, **params)
        if features:
            require_spatial(self.method_name, "student", self.student_shapes)
            require_spatial(self.method_name, "teacher", self.teacher_shapes)

    @torch.no_grad()
    def teacher_forward(self, x: torch.Tensor) -> TeacherOutput:
        out = super().teacher_forward(x)
        if self.hp["target"] == "logits":
            x_low, x_high = split_bands(x, self.hp["cutoff"])
            out.features[BANDS[0]] = self.teacher(x_low).detach()
            out.features[BANDS[1]] = self.teacher(x_high).detach()
        return out

    def student_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits, feats = super().student_forward(x)
        if self.hp["target"] == "logits":  # the student's band logits travel with its features
            x_low, x_high = split_bands(x, self.hp["cutoff"])
            feats = {**feats, BANDS[0]: self.student(x_low), BANDS[1]: self.student(x_high)}
        return logits, feats

    def losses(self, logits: torch.Tensor, feats: dict[str, torch.Tensor], teacher: TeacherOutput | None,
               y: torch.Tensor) -> dict[str, torch.Tensor]:
        hp = self.hp
        terms = {"ce": self.ce(logits, y)}
        if hp["target"] == "logits":
            temp = hp["temperature"]
            terms["kd"] = hp["kd_weight"] * kl_div(logits, teacher.logits, temp)
            terms["kd_low"] = hp["low_weight"] * kl_div(feats[BANDS[0]], teacher.features[BANDS[0]], temp)
            terms["kd_high"] = hp["high_weight"] * kl_div(feats[BANDS[1]], teacher.features[BANDS[1]], temp)
            return terms
        low = high = logits.new_zeros(())
        for adapter, (s, t) in zip(self.adapters, self.layer_pairs(feats, teacher), strict=True):
            lo, hi = band_mse(adapter(s), t.to(s.dtype), hp["cutoff"])  # adapters resize to the teacher map
            low, high = low + lo, high + hi
        terms["feat_low"] = hp["low_weight"] * low
        terms["feat_high"] = hp["high_weight"] * high
        return terms
