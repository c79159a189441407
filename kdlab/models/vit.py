"""A tiny Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image
Recognition at Scale", ICLR 2021), sized for 28x28 / 32x32 images.

Non-overlapping ``patch`` x ``patch`` patches are embedded by a strided conv, a learned position embedding
is added (after prepending a class token when ``pool="cls"``), then ``depth`` pre-norm transformer blocks
(multi-head self-attention and a GELU MLP, each residual), a final LayerNorm, pooling (the class token or
the mean of the patch tokens) and a linear head.

Init follows timm's VisionTransformer (the reference implementation's PyTorch port): linear layers and the
position embedding truncated-normal with std 0.02 and zero biases, the class token normal with std 1e-6,
LayerNorms 1 / 0; the patch-embedding conv keeps PyTorch's default (Kaiming-uniform) init, as timm does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.errors import ConfigError
from kdlab.models.base import register_model
from kdlab.models.tokens import FeedForward, PatchEmbed, TokenModel, TokenPool, check_patch, reset_layer_norms_
from kdlab.registry import Param

POOLS = ("cls", "mean")


class Attention(nn.Module):
    """Multi-head self-attention over tokens (N, L, dim)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, l, d = x.shape
        q, k, v = self.qkv(x).reshape(n, l, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(n, l, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio), dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(TokenModel):
    """ViT. Taps: stages ``blocks.i`` (N, tokens, dim), embedding ``pool`` (N, dim), logits ``head``."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], patch: int = 4, dim: int = 128,
                 depth: int = 6, heads: int = 4, mlp_ratio: float = 2.0, pool: str = "cls",
                 dropout: float = 0.0, name: str = "vit_tiny"):
        super().__init__()
        rows, cols = check_patch(name, patch, in_shape)
        if dim % heads:
            raise ConfigError(f"model {name!r} params.heads: {heads} does not divide dim={dim}")
        prefix = 1 if pool == "cls" else 0
        self.patch_embed = PatchEmbed(in_shape[0], dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if prefix else None
        self.pos_embed = nn.Parameter(torch.zeros(1, rows * cols + prefix, dim))
        self.pos_drop = nn.Dropout(dropout)
        self.add_tail((Block(dim, heads, mlp_ratio, dropout) for _ in range(depth)), dim, num_classes,
                      TokenPool(pool, prefix), rows * cols + prefix)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        reset_layer_norms_(self)

    def embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens, the class token prepended when pooling on it, plus the position embedding."""
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.pos_drop(x + self.pos_embed)


@register_model("vit_tiny", family="transformer", params={
    "patch": Param(4, "patch size in pixels (must divide height and width)", int, 1, 64),
    "dim": Param(128, "token width", int, 8, 2048),
    "depth": Param(6, "number of transformer blocks", int, 1, 48),
    "heads": Param(4, "attention heads (must divide dim)", int, 1, 64),
    "mlp_ratio": Param(2.0, "MLP hidden width / dim", float, 0.25, 16.0),
    "pool": Param("cls", "classify from the class token or the mean of the patch tokens", str, choices=POOLS),
    "dropout": Param(0.0, "dropout on attention, MLP and embeddings", float, 0.0, 0.95),
})
def vit_tiny(num_classes: int, in_shape: tuple[int, int, int], **params) -> nn.Module:
    """Tiny Vision Transformer: conv patch embedding, pre-norm blocks, cls-token or mean pooling."""
    return VisionTransformer(num_classes, in_shape, **params)
