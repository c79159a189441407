"""``timm:<name>`` / ``torchvision:<name>`` passthrough: clear error when missing, adaptation and taps."""
from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from kdlab.errors import ConfigError, UnknownNameError
from kdlab.models import create
from kdlab.models.external import MissingPackageError, adapt_channels, discover_stages
from kdlab.models.taps import FeatureTaps


@pytest.mark.parametrize("prefix", ["timm", "torchvision"])
def test_missing_package_says_what_to_install(monkeypatch, prefix):
    monkeypatch.setitem(sys.modules, prefix, None)  # makes the import fail even where it is installed
    with pytest.raises(MissingPackageError, match=rf"pip install {prefix}\b") as info:
        create(f"{prefix}:resnet18", 10, (3, 32, 32))
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ImportError)
    assert f"{prefix}:resnet18" in str(info.value)


def test_unknown_prefix_and_empty_name():
    with pytest.raises(UnknownNameError, match=r"timm:<name>.*torchvision:<name>"):
        create("keras:resnet18", 10, (3, 32, 32))
    with pytest.raises(ConfigError, match="names no timm model"):
        create("timm:", 10, (3, 32, 32))
    with pytest.raises(ConfigError, match="in_shape"):  # create's own validation still runs first
        create("timm:resnet18", 10, (32, 32))


# --- the adaptation logic, against small stand-ins for the two packages -------------------------------

class _TimmNet(nn.Module):
    def __init__(self, num_classes: int, in_chans: int):
        super().__init__()
        self.conv_stem = nn.Conv2d(in_chans, 8, 3, padding=1)
        self.stages = nn.Sequential(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()),
                                    nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()))
        self.head = nn.Linear(16, num_classes)
        self.feature_info = [{"num_chs": 8, "reduction": 1, "module": "stages.0"},
                             {"num_chs": 16, "reduction": 2, "module": "stages.1"}]

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.conv_stem(x)).mean(dim=(2, 3)))


class _TvNet(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.layer1 = nn.Conv2d(8, 8, 3, padding=1)
        self.layer2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer2(self.layer1(self.conv1(x))).mean(dim=(2, 3)))


@pytest.fixture
def fake_timm(monkeypatch):
    calls = []
    mod = types.ModuleType("timm")
    mod.is_model = lambda name: name == "tiny"
    mod.list_models = lambda: ["resnet18", "tiny", "vit_tiny_patch16_224"]

    def create_model(name, pretrained=False, num_classes=1000, in_chans=3):
        calls.append({"name": name, "pretrained": pretrained})
        return _TimmNet(num_classes, in_chans)

    mod.create_model = create_model
    monkeypatch.setitem(sys.modules, "timm", mod)
    return calls


@pytest.fixture
def fake_torchvision(monkeypatch):
    mod = types.ModuleType("torchvision")
    def get_model(name, weights=None, num_classes=1000):
        return _TvNet(num_classes)

    mod.models = types.SimpleNamespace(list_models=lambda module=None: ["resnet18", "tinynet"],
                                       get_model=get_model)
    monkeypatch.setitem(sys.modules, "torchvision", mod)


def test_timm_passthrough(fake_timm):
    model = create("timm:tiny", 7, (1, 28, 28))
    assert fake_timm == [{"name": "tiny", "pretrained": False}]  # never downloads weights by default
    assert model.kdlab_name == "timm:tiny"
    assert model.kdlab_taps == {"stages": ["stages.0", "stages.1"], "logits": "head"}
    with FeatureTaps(model, model.kdlab_taps["stages"]) as t:
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)
    assert t["stages.1"].shape == (2, 16, 14, 14)
    with pytest.raises(UnknownNameError, match=r"timm model 'resnet19'.*resnet18"):
        create("timm:resnet19", 7, (1, 28, 28))
    with pytest.raises(ConfigError, match=r"model 'timm:tiny' params:.*drop_rate"):
        create("timm:tiny", 7, (1, 28, 28), drop_rate=0.1)


def test_torchvision_passthrough_adapts_channels(fake_torchvision):
    model = create("torchvision:tinynet", 5, (1, 28, 28))
    assert model.conv1.in_channels == 1 and model.conv1.stride == (2, 2) and model.conv1.bias is None
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 5)
    assert model.kdlab_taps == {"stages": ["layer1", "layer2"], "logits": "fc"}
    assert create("torchvision:tinynet", 5, (3, 32, 32)).conv1.in_channels == 3
    with pytest.raises(UnknownNameError, match="torchvision model 'resnet81'"):
        create("torchvision:resnet81", 5, (3, 32, 32))


def test_adapt_channels_and_discover_stages():
    nested = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3)), nn.ReLU())
    assert adapt_channels(nested, 1)[0][0].in_channels == 1
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4))
    with pytest.raises(ConfigError, match="grouped first conv '0'"):
        adapt_channels(grouped, 1)

    vit_like = nn.Module()
    vit_like.encoder = nn.Module()
    vit_like.encoder.layers = nn.Sequential()
    for i in range(2):
        vit_like.encoder.layers.add_module(f"encoder_layer_{i}", nn.Linear(4, 4))
    assert discover_stages(vit_like) == ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]

    staged = nn.Module()
    staged.features = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3)), nn.Sequential(nn.Conv2d(4, 4, 3)))
    assert discover_stages(staged) == ["features.0", "features.1"]
    flat = nn.Module()
    flat.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2))  # VGG-style: no stages
    assert discover_stages(flat) == []


# --- the real packages, where installed ------------------------------------------------------------------

def test_real_timm():
    pytest.importorskip("timm")
    model = create("timm:resnet18", 10, (1, 28, 28))
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    names = dict(model.named_modules())
    assert all(p in names for p in model.kdlab_taps.get("stages", []) + [model.kdlab_taps["logits"]])


def test_real_torchvision():
    pytest.importorskip("torchvision")
    model = create("torchvision:resnet18", 10, (1, 28, 28))
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert model.kdlab_taps == {"stages": ["layer1", "layer2", "layer3", "layer4"], "logits": "fc"}
