"""Wide Residual Networks (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016): WRN-depth-k.

A 3x3 stem conv to 16 channels, three groups of (depth-4)/6 pre-activation basic blocks
(BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3) with 16k, 32k, 64k channels at strides 1, 2, 2, a final
BN-ReLU, global average pooling and a linear classifier; 1x1 conv shortcuts where shapes change.
This follows the authors' PyTorch port as used by CRD and mdistiller (wrn_16_1 ... wrn_40_2).

Global pooling is adaptive (28x28 and 8x8 inputs work); the stem takes ``in_shape[0]`` channels.
Init as in the reference: convs Kaiming-normal (fan_out), BN weights 1 / biases 0, linear bias 0.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.errors import ConfigError
from kdlab.models.base import register_model
from kdlab.models.residual import init_conv_bn_, residual_stage
from kdlab.registry import Param

DROPOUT = Param(0.0, "dropout between the two convs of each block", float, 0.0, 0.95)


class WideBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3, plus the (projected) input."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.dropout = dropout
        self.equal = c_in == c_out and stride == 1
        self.shortcut = None if self.equal else nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(act)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        # as in the reference: the projection shortcut reads the activated input, the identity the raw one
        return out + (x if self.shortcut is None else self.shortcut(act))


class WideResNet(nn.Module):
    """WRN-``depth``-``widen``. Taps: stages ``block1..block3``, embedding ``relu``, logits ``fc``."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], depth: int = 16, widen: int = 2,
                 dropout: float = 0.0, name: str = "wrn"):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ConfigError(f"model {name!r} params.depth: {depth} is not 6n+4 "
                              "(valid e.g. 10, 16, 22, 28, 40)")
        n = (depth - 4) // 6
        channels = [16, 16 * widen, 32 * widen, 64 * widen]
        self.depth, self.widen = depth, widen
        self.conv1 = nn.Conv2d(in_shape[0], channels[0], 3, padding=1, bias=False)
        self.block1, self.block2, self.block3 = (
            residual_stage(partial(WideBlock, c_out=channels[g + 1], dropout=dropout), channels[g], channels[g + 1],
                           n, stride) for g, stride in enumerate((1, 2, 2)))
        self.bn1 = nn.BatchNorm2d(channels[3])
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels[3], num_classes)
        self.num_features = channels[3]
        init_conv_bn_(self)
        nn.init.zeros_(self.fc.bias)
        self.kdlab_taps = {"stages": ["block1", "block2", "block3"], "embedding": "relu", "logits": "fc"}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled penultimate feature (N, C) that the classifier reads."""
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.avgpool(self.relu(self.bn1(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))


VARIANTS: dict[str, tuple[int, int]] = {"wrn_16_1": (16, 1), "wrn_16_2": (16, 2), "wrn_40_1": (40, 1),
                                        "wrn_40_2": (40, 2)}


def _register_variant(name: str, depth: int, widen: int) -> None:
    def build(num_classes: int, in_shape: tuple[int, int, int], dropout: float = 0.0) -> nn.Module:
        return WideResNet(num_classes, in_shape, depth=depth, widen=widen, dropout=dropout, name=name)

    build.__name__ = name
    build.__doc__ = f"Wide ResNet WRN-{depth}-{widen} (Zagoruyko & Komodakis 2016)."
    register_model(name, family="wrn", params={"dropout": DROPOUT})(build)


for _name, (_depth, _widen) in VARIANTS.items():
    _register_variant(_name, _depth, _widen)


@register_model("wrn", family="wrn", params={
    "depth": Param(16, "layers: 6n+4 (16, 22, 28, 40, ...)", int, 10, 1000),
    "widen": Param(2, "width multiplier k (channels 16k, 32k, 64k)", int, 1, 64),
    "dropout": DROPOUT,
})
def wrn(num_classes: int, in_shape: tuple[int, int, int], depth: int = 16, widen: int = 2,
        dropout: float = 0.0) -> nn.Module:
    """Wide ResNet WRN-depth-widen of any depth 6n+4 and width k (Zagoruyko & Komodakis 2016)."""
    return WideResNet(num_classes, in_shape, depth=depth, widen=widen, dropout=dropout, name="wrn")
