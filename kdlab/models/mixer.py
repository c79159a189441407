"""A tiny MLP-Mixer (Tolstikhin et al., "MLP-Mixer: An all-MLP Architecture for Vision", NeurIPS 2021),
sized for 28x28 / 32x32 images.

Non-overlapping ``patch`` x ``patch`` patches are embedded by a strided conv (the per-patch linear layer),
then ``depth`` Mixer layers, each a residual token-mixing MLP (across patches, per channel) and a residual
channel-mixing MLP (across channels, per patch), both pre-LayerNorm with GELU; a final LayerNorm, global
average pooling over patches and a linear head. Hidden widths are ``token_ratio * dim`` and
``channel_ratio * dim`` (timm's ``mlp_ratio=(0.5, 4.0)``).

Init follows timm's MlpMixer (the reference implementation's PyTorch port): linear layers Xavier-uniform
with biases N(0, 1e-6) inside MLPs, the patch conv LeCun-normal with zero bias, the head zero-initialised.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from kdlab.errors import ConfigError
from kdlab.models.base import register_model
from kdlab.models.tokens import FeedForward, PatchEmbed, TokenModel, TokenPool, check_patch, reset_layer_norms_
from kdlab.registry import Param


class MixerBlock(nn.Module):
    """x + token_mlp(norm1(x)^T)^T, then x + channel_mlp(norm2(x)), on tokens (N, L, dim)."""

    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_tokens = FeedForward(tokens, token_hidden, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_channels = FeedForward(dim, channel_hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.mlp_channels(self.norm2(x))


class MlpMixer(TokenModel):
    """MLP-Mixer. Taps: stages ``blocks.i`` (N, tokens, dim), embedding ``pool`` (N, dim), logits ``head``."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], patch: int = 4, dim: int = 128,
                 depth: int = 6, token_ratio: float = 0.5, channel_ratio: float = 4.0, dropout: float = 0.0,
                 name: str = "mixer_tiny"):
        super().__init__()
        rows, cols = check_patch(name, patch, in_shape)
        tokens = rows * cols
        token_hidden, channel_hidden = int(token_ratio * dim), int(channel_ratio * dim)
        if token_hidden < 1:
            raise ConfigError(f"model {name!r} params.token_ratio: {token_ratio} x dim={dim} "
                              "leaves no hidden units")
        if channel_hidden < 1:
            raise ConfigError(f"model {name!r} params.channel_ratio: {channel_ratio} x dim={dim} "
                              "leaves no hidden units")
        self.stem = PatchEmbed(in_shape[0], dim, patch)
        self.add_tail((MixerBlock(tokens, dim, token_hidden, channel_hidden, dropout) for _ in range(depth)),
                      dim, num_classes, TokenPool("mean"), tokens)
        for path, m in self.named_modules():
            if isinstance(m, nn.Linear):
                if path == "head":
                    nn.init.zeros_(m.weight)
                    nn.init.zeros_(m.bias)
                    continue
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)
            elif isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                std = math.sqrt(1.0 / fan_in) / 0.8796256610342398
                nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)  # LeCun normal
                nn.init.zeros_(m.bias)
        reset_layer_norms_(self)

    def embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens (N, tokens, dim) of the per-patch linear embedding."""
        return self.stem(x)


@register_model("mixer_tiny", family="mixer", params={
    "patch": Param(4, "patch size in pixels (must divide height and width)", int, 1, 64),
    "dim": Param(128, "channels per patch token", int, 8, 2048),
    "depth": Param(6, "number of Mixer layers", int, 1, 48),
    "token_ratio": Param(0.5, "token-mixing MLP hidden width / dim", float, 0.05, 16.0),
    "channel_ratio": Param(4.0, "channel-mixing MLP hidden width / dim", float, 0.05, 16.0),
    "dropout": Param(0.0, "dropout inside the MLPs", float, 0.0, 0.95),
})
def mixer_tiny(num_classes: int, in_shape: tuple[int, int, int], **params) -> nn.Module:
    """Tiny MLP-Mixer: conv patch embedding, token- and channel-mixing MLP blocks, mean pooling."""
    return MlpMixer(num_classes, in_shape, **params)
