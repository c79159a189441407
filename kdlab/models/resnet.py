"""CIFAR ResNets (He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, sec. 4.2),
in the variant used by the distillation benchmarks of CRD (Tian, Krishnan & Isola, "Contrastive
Representation Distillation", ICLR 2020) and mdistiller (Zhao et al., "Decoupled Knowledge Distillation",
CVPR 2022): a 3x3 stem conv, three stages of 6n+2 basic blocks (or 9n+2 bottlenecks) at strides 1, 2, 2,
global average pooling and a linear classifier; 1x1 conv + BN projection shortcuts where shapes change.
The ``x4`` models (resnet8x4, resnet32x4) use channels (32, 64, 128, 256) instead of (16, 16, 32, 64).

Global pooling is adaptive (not the reference's fixed 8x8 pool), so 28x28 and 8x8 inputs work too; the
stem takes ``in_shape[0]`` channels. Convs are Kaiming-normal (fan_out), BN weights 1 and biases 0,
as in the reference code.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from kdlab.errors import ConfigError
from kdlab.models.base import register_model
from kdlab.models.residual import init_conv_bn_, residual_stage
from kdlab.registry import Param

BLOCKS = ("basic", "bottleneck")


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the (projected) input, then ReLU."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _shortcut(c_in, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1(4x)-BN, plus the (projected) input, then ReLU."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class CifarResNet(nn.Module):
    """ResNet-``depth`` for small images. Taps: stages ``layer1..3``, embedding ``layer3``, logits ``fc``.

    ``filters`` = (stem, layer1, layer2, layer3) channels; ``block`` "basic" needs depth = 6n+2,
    "bottleneck" depth = 9n+2.
    """

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], depth: int = 20,
                 filters: tuple[int, int, int, int] = (16, 16, 32, 64), block: str = "basic",
                 name: str = "resnet"):
        super().__init__()
        per, cls = (6, BasicBlock) if block == "basic" else (9, Bottleneck)
        if depth < per + 2 or (depth - 2) % per:
            valid = ", ".join(str(per * k + 2) for k in (1, 2, 3, 5, 9, 18))
            raise ConfigError(f"model {name!r} params.depth: {depth} is not {per}n+2 for {block} blocks "
                              f"(valid e.g. {valid})")
        n = (depth - 2) // per
        self.depth, self.block = depth, block
        self.conv1 = nn.Conv2d(in_shape[0], filters[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters[0])
        self.relu = nn.ReLU(inplace=True)
        c = filters[0]
        layers = []
        for planes, stride in zip(filters[1:], (1, 2, 2), strict=True):
            layers.append(residual_stage(partial(cls, planes=planes), c, planes * cls.expansion, n, stride))
            c = planes * cls.expansion
        self.layer1, self.layer2, self.layer3 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        self.num_features = c
        init_conv_bn_(self)
        self.kdlab_taps = {"stages": ["layer1", "layer2", "layer3"], "embedding": "layer3", "logits": "fc"}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled penultimate feature (N, C) that the classifier reads."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.avgpool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))


#: name -> (depth, filters) of the CRD / mdistiller model zoo.
VARIANTS: dict[str, tuple[int, tuple[int, int, int, int]]] = {
    **{f"resnet{d}": (d, (16, 16, 32, 64)) for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": (8, (32, 64, 128, 256)),
    "resnet32x4": (32, (32, 64, 128, 256)),
}


def _register_variant(name: str, depth: int, filters: tuple[int, int, int, int]) -> None:
    wide = " (channels x4)" if filters[0] == 32 else ""

    def build(num_classes: int, in_shape: tuple[int, int, int]) -> nn.Module:
        return CifarResNet(num_classes, in_shape, depth=depth, filters=filters, name=name)

    build.__name__ = name
    build.__doc__ = f"CIFAR ResNet-{depth}{wide}, basic blocks, {filters[1:]} channels (He et al. 2016)."
    register_model(name, family="resnet", params={})(build)


for _name, (_depth, _filters) in VARIANTS.items():
    _register_variant(_name, _depth, _filters)


@register_model("resnet", family="resnet", params={
    "depth": Param(20, "layers: 6n+2 for basic blocks, 9n+2 for bottlenecks", int, 8, 2000),
    "width": Param(16, "channels of layer1 (layer2, layer3 double it)", int, 1, 1024),
    "stem": Param(0, "channels of the stem conv (0: same as width)", int, 0, 1024),
    "block": Param("basic", "residual block type", str, choices=BLOCKS),
})
def resnet(num_classes: int, in_shape: tuple[int, int, int], depth: int = 20, width: int = 16, stem: int = 0,
           block: str = "basic") -> nn.Module:
    """CIFAR ResNet of any depth and width (He et al. 2016); resnet32x4 is depth=32, width=64, stem=32."""
    filters = (stem or width, width, 2 * width, 4 * width)
    return CifarResNet(num_classes, in_shape, depth=depth, filters=filters, block=block, name="resnet")
