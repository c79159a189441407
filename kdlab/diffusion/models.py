"""Denoisers of the diffusion track: an MLP for 2-D points and a ``diffusers.UNet2DModel`` for images.

Every denoiser is called ``net(x, t, y=None) -> v`` (v-prediction, same shape as ``x``; ``t`` float timesteps in
[0, 999]; ``y`` labels, where ``num_classes`` is the null label of classifier-free guidance) and exposes
``num_classes``, ``sample_shape``, ``config`` (what rebuilds it) and ``time_embedding`` (the module whose output
conditions the network; the guidance adapter adds to it). Saved as ``config.json`` + ``model.safetensors``.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdlab.errors import CheckpointError, ConfigError, ShapeError

FORMAT = "kdlab.diffusion.denoiser/1"


def timestep_features(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of (float) timesteps, as in DDPM's transformer-style embedding."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class _Block(nn.Module):
    """Pre-norm residual MLP block conditioned on the time (and class) embedding."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, width))

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        return h + self.mlp(self.norm(h + emb))


class MLPDenoiser(nn.Module):
    """Residual MLP denoiser of points in R^d (the 2-D toys), class-conditional when ``num_classes`` > 0."""

    def __init__(self, dim: int = 2, num_classes: int = 0, width: int = 256, depth: int = 3):
        super().__init__()
        self.num_classes, self.sample_shape = int(num_classes), (int(dim),)
        self.config = {"arch": "mlp", "dim": int(dim), "num_classes": int(num_classes), "width": int(width),
                       "depth": int(depth)}
        self.time_embedding = nn.Sequential(nn.Linear(64, width), nn.SiLU(), nn.Linear(width, width))
        self.class_embedding = nn.Embedding(num_classes + 1, width) if num_classes else None
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(_Block(width) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        emb = self.time_embedding(timestep_features(t, 64))
        if self.class_embedding is not None:
            y = torch.full((len(x),), self.num_classes, device=x.device) if y is None else y
            emb = emb + self.class_embedding(y)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)


class UNetDenoiser(nn.Module):
    """A small ``diffusers.UNet2DModel`` (no attention) on 1-channel images, class embedding for the labels."""

    def __init__(self, sample_shape: Sequence[int] = (1, 28, 28), num_classes: int = 0,
                 channels: Sequence[int] = (16, 32, 64), layers_per_block: int = 1):
        super().__init__()
        from diffusers import UNet2DModel

        c, h, w = (int(s) for s in sample_shape)
        if h != w or h % 2 ** (len(channels) - 1):
            raise ConfigError.at("channels", f"{len(channels)} UNet levels halve {h}x{w} images "
                                 f"{len(channels) - 1} times; use fewer levels or a size divisible by "
                                 f"{2 ** (len(channels) - 1)}")
        self.num_classes, self.sample_shape = int(num_classes), (c, h, w)
        self.config = {"arch": "unet", "sample_shape": [c, h, w], "num_classes": int(num_classes),
                       "channels": [int(k) for k in channels], "layers_per_block": int(layers_per_block)}
        n = len(channels)
        self.unet = UNet2DModel(sample_size=h, in_channels=c, out_channels=c, block_out_channels=tuple(channels),
                                layers_per_block=layers_per_block, down_block_types=("DownBlock2D",) * n,
                                up_block_types=("UpBlock2D",) * n, add_attention=False,
                                norm_num_groups=min(8, min(channels)),
                                num_class_embeds=num_classes + 1 if num_classes else None)

    @property
    def time_embedding(self) -> nn.Module:
        return self.unet.time_embedding

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        if self.num_classes:
            y = torch.full((len(x),), self.num_classes, device=x.device) if y is None else y
        return self.unet(x, t, class_labels=y if self.num_classes else None).sample


def create_denoiser(sample_shape: Sequence[int], num_classes: int = 0, arch: str = "auto", width: int = 0,
                    **kw: Any) -> nn.Module:
    """A denoiser for samples of ``sample_shape``: ``mlp`` for vectors, ``unet`` for images (``auto``); ``width``
    is the MLP's hidden size or the UNet's first channel count (0: the default)."""
    shape = tuple(int(s) for s in sample_shape)
    arch = ("mlp" if len(shape) == 1 else "unet") if arch == "auto" else arch
    if arch == "mlp" and len(shape) == 1:
        return MLPDenoiser(shape[0], num_classes, width=width or 256, **kw)
    if arch == "unet" and len(shape) == 3:
        base = width or 16
        return UNetDenoiser(shape, num_classes, channels=kw.pop("channels", (base, 2 * base, 4 * base)), **kw)
    raise ConfigError.at("arch", f"{arch!r} cannot model samples of shape {list(shape)} (mlp: vectors, unet: "
                         "images C x H x W)", ("auto", "mlp", "unet"))


def build_denoiser(config: dict[str, Any]) -> nn.Module:
    """The (untrained) denoiser a ``config`` describes."""
    cfg = dict(config)
    arch = cfg.pop("arch", None)
    if arch == "mlp":
        return MLPDenoiser(**cfg)
    if arch == "unet":
        return UNetDenoiser(**cfg)
    raise CheckpointError(f"unknown denoiser arch {arch!r} in its config; known: mlp, unet")


def save_denoiser(net: nn.Module, folder: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """``config.json`` (architecture + ``meta``) and ``model.safetensors`` in ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"format": FORMAT, "model": net.config, "meta": meta or {}},
                                                   indent=1, default=str))
    return folder


def read_denoiser_config(folder: str | Path) -> dict[str, Any]:
    """The saved config (``model``, ``meta``) of a denoiser folder, or CheckpointError saying what it is not."""
    path = Path(folder) / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{str(folder)!r} is not a kdlab diffusion denoiser folder (no readable "
                              f"config.json: {e})") from e
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT or not (Path(folder) / "model.safetensors").is_file():
        raise CheckpointError(f"{str(folder)!r} is not a kdlab diffusion denoiser (config.json format "
                              f"{cfg.get('format') if isinstance(cfg, dict) else None!r}, expected {FORMAT!r} with "
                              "model.safetensors); save one with kdlab.diffusion.save_denoiser")
    return cfg


def load_denoiser(folder: str | Path) -> nn.Module:
    """A denoiser saved by ``save_denoiser`` (safetensors: no pickle)."""
    from safetensors.torch import load_file

    net = build_denoiser(read_denoiser_config(folder)["model"])
    try:
        net.load_state_dict(load_file(Path(folder) / "model.safetensors"))
    except RuntimeError as e:
        raise CheckpointError(f"{str(folder)!r}: weights do not fit the saved config: {e}") from e
    return net


def output_shape(net: nn.Module, sample_shape: Sequence[int]) -> tuple[int, ...]:
    """The per-sample output shape of ``net`` on a batch of two noise samples (no gradient)."""
    x = torch.zeros(2, *sample_shape, device=next(net.parameters()).device)
    with torch.no_grad():
        return tuple(net(x, torch.tensor([999.0, 0.0], device=x.device), None).shape[1:])


def check_same_output(teacher: nn.Module, student: nn.Module, where: str = "student") -> None:
    """ShapeError (before any training) unless ``student`` maps samples to the teacher's output shape."""
    shape = tuple(teacher.sample_shape)
    try:
        got = output_shape(student, shape)
    except (RuntimeError, ValueError, TypeError) as e:
        raise ShapeError(f"{where}: the student cannot take the teacher's samples of shape {list(shape)}: {e}") from e
    want = output_shape(teacher, shape)
    if got != want:
        raise ShapeError(f"{where}: the student outputs {list(got)} per sample, the teacher {list(want)}; a "
                         "distilled student must predict the same thing (v of the same shape)")
    if getattr(student, "num_classes", 0) != teacher.num_classes:
        raise ShapeError(f"{where}: the student has {getattr(student, 'num_classes', 0)} classes, the teacher "
                         f"{teacher.num_classes}")
