"""Patch-token building blocks shared by the ViT and the MLP-Mixer: patch grid check, patch embedding,
GELU MLP, token pooling, and the blocks -> norm -> pool -> head tail with its taps."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from kdlab.errors import ConfigError


def check_patch(name: str, patch: int, in_shape: tuple[int, int, int]) -> tuple[int, int]:
    """The patch grid (rows, cols); ConfigError naming ``patch`` when it does not divide the image."""
    _, h, w = in_shape
    if h % patch or w % patch:
        sizes = sorted({p for p in range(1, min(h, w) + 1) if h % p == 0 and w % p == 0})
        raise ConfigError(f"model {name!r} params.patch: {patch} does not divide the {h}x{w} image "
                          f"(valid: {', '.join(map(str, sizes))})")
    return h // patch, w // patch


class PatchEmbed(nn.Module):
    """(N, C, H, W) -> (N, tokens, dim) by a conv with kernel = stride = patch."""

    def __init__(self, c_in: int, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(c_in, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class FeedForward(nn.Module):
    """Linear -> GELU -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class TokenPool(nn.Module):
    """(N, L, dim) -> (N, dim): the class token (``"cls"``) or the mean of the last ``L - skip`` tokens."""

    def __init__(self, mode: str = "cls", skip: int = 0):
        super().__init__()
        self.mode, self.skip = mode, skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] if self.mode == "cls" else x[:, self.skip:].mean(dim=1)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, skip={self.skip}"


def reset_layer_norms_(model: nn.Module) -> None:
    """Every LayerNorm of ``model`` back to weight 1, bias 0."""
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class TokenModel(nn.Module):
    """Patch tokens -> ``blocks`` -> final ``norm`` -> ``pool`` -> ``head``; subclasses embed the patches.

    Taps: stages ``blocks.i`` (N, tokens, dim), embedding ``pool`` (N, dim), logits ``head``.
    """

    def add_tail(self, blocks: Iterable[nn.Module], dim: int, num_classes: int, pool: TokenPool,
                 num_tokens: int) -> None:
        """Register blocks, final LayerNorm, pool and head (in that order) and declare the taps."""
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pool = pool
        self.head = nn.Linear(dim, num_classes)
        self.num_features, self.num_tokens = dim, num_tokens
        self.kdlab_taps = {"stages": [f"blocks.{i}" for i in range(len(self.blocks))], "embedding": "pool",
                           "logits": "head"}

    def embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> the tokens (N, L, dim) that the first block reads."""
        raise NotImplementedError

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Token features (N, tokens, dim) after the last block and the final norm."""
        x = self.embed_patches(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.tokens(x)))
